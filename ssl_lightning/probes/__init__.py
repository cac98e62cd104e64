"""Probes fitted on frozen, cached features: multinomial logistic regression (L-BFGS) and weighted k-NN."""
