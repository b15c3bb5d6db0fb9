def kcore_controlers(settings):  # misspelled on purpose, and not even marked
    return []
