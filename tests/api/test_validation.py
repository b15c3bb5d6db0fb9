

def test_trailing_newline_is_not_a_valid_name_or_label():
    """Python's ``$`` matches before a final newline; Kubernetes' anchors do not."""
    from kcore.api import validation

    assert validation.is_valid_label_value("abc\n")
    assert validation.is_dns1123_subdomain("abc\n")
    assert validation.is_dns1123_label("abc\n")
    assert validation.is_qualified_name("app\n")
    assert not validation.is_valid_label_value("abc")
