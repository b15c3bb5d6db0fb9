from kcore import hookimpl


@hookimpl
def kcore_stor(settings):  # misspelled on purpose: kcore_store
    return None
