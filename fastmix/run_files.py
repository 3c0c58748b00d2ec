"""Names of the files a run directory holds that more than one stage reads or removes.

Kept apart from ``fastmix.evaluate.evaluate`` (which imports scikit-learn) so that training, which
removes an evaluation of weights it is about to change, does not pay for that import."""

DONE_FILE = "done.json"  # written last by a run that trained all its steps (fastmix.train.trainer)
RESULTS_FILE = "results.json"  # fastmix.evaluate.evaluate: every metric
LOGITS_FILE = "logits.npz"  # fastmix.evaluate.evaluate: logits and labels per set
