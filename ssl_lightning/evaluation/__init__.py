"""How an encoder is scored downstream: the fine-tune / linear Classifier, its monitored metric, the test metrics."""
