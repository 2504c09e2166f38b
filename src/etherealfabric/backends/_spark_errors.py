"""What a Spark error says, in one line: the Java exception behind Py4J's wrapper
(:func:`reason`, :func:`first_line`), and whether a job failed because its Python worker or
executor died rather than because of the node's code (:func:`worker_death`)."""

from __future__ import annotations

__all__ = ["WORKER_DEATHS", "first_line", "reason", "worker_death"]


def reason(exc: BaseException) -> str:
    """Why ``exc`` happened, in one line: a Py4J error's Java exception (``SparkException:
    Could not parse Master URL: ...``), not Py4J's "An error occurred while calling ..."."""
    line = first_line(exc).lstrip(": ").rstrip(". ")
    if "Exception" in line or "Error" in line:
        return line
    return f"{type(exc).__name__}: {line}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if "Exception" in line or "Error" in line:
            return line.strip()[:500]
    return (text.splitlines()[0] if text else type(exc).__name__)[:500]


#: What Spark says when a task failed because its Python worker or its executor died, not
#: because of the node's code (whose exceptions come back as values: ``run_captured``)
WORKER_DEATHS = ("Python worker exited unexpectedly", "ExecutorLostFailure")


def worker_death(exc: BaseException) -> str | None:
    """What Spark said about the death of the task's Python worker (or executor), from the
    job's error; None if the job failed for another reason."""
    text = str(exc)
    for line in text.splitlines():
        for words in WORKER_DEATHS:
            at = line.find(words)
            if at >= 0:
                # "... Lost task 0.0 in stage 1.0 (TID 1) (host executor driver):
                # org.apache.spark.SparkException: Python worker exited unexpectedly (crashed).
                # Consider setting ..."
                start = line.rfind("Lost task", 0, at)
                said = line[start if start >= 0 else at :].strip()
                said = said.split(". Consider setting", 1)[0]  # (its advice: not what happened)
                said = said.replace("org.apache.spark.SparkException: ", "")
                return said[:500]
    return None
