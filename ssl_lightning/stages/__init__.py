"""One cell end to end: the pipeline, the pretext, downstream and frozen stages, their stores, results."""
