"""Shape fitting: ground truth, sampling, fitting, extraction, metrics, reports."""
