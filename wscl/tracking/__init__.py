"""MLflow: metric rows, the client and its retries, the study's parent runs, live logging, finished runs
and deferred (pending) logging. Built on `run`'s outputs (metrics.json, model.pt)."""
