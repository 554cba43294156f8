"""The errors the command line reports without a traceback, and the exit code of each.

Kept free of heavy imports: the CLI needs these classes before it knows which command runs, and
``wscl --help`` must stay fast. The modules that raise them import them from here.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of ``wscl``. Codes 10 to 63 are left to callers such as cluster wrappers; 75 is sysexits'
    EX_TEMPFAIL (a temporary failure: run the same command again)."""

    OK = 0
    FAILED = 1  # an unexpected error (Python prints the traceback)
    USAGE = 2  # the command line itself is wrong (argparse)
    CONFIG = 3  # the run or study configuration is invalid; the message names the setting
    DATA = 4  # a dataset is missing, incomplete, corrupt or fails its checksums
    TRAINING_FAILED = 5  # a NaN or infinite loss, or (runtime.on_training_failure: stop) an exploded loss or a
                         # collapsed network; the last checkpoint is kept
    TRACKING = 6  # the MLflow store cannot be reached, or lacks what a run needs (experiment or parent run)
    ARCHIVE_INVALID = 7  # verify-archive found a missing, extra or changed file, or no readable archive
    WRITE_FAILED = 8  # a file could not be written (disk full, read-only folder); nothing half-written is left
    RUN_RESULT_INVALID = 9  # a result an earlier job wrote (metrics.json, a table, setup.json) is missing or damaged
    REQUEUE = 75  # stopped by SIGTERM/SIGUSR1 after writing a checkpoint: rerun (requeue) to resume

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "success",
    ExitCode.FAILED: "unexpected error (with a traceback)",
    ExitCode.USAGE: "command-line usage error",
    ExitCode.CONFIG: "invalid configuration (the message names the setting)",
    ExitCode.DATA: "dataset missing, incomplete or failing its checksums",
    ExitCode.TRAINING_FAILED: "training failed: NaN or infinite loss, or an exploded loss or collapse under "
                              "runtime.on_training_failure=stop",
    ExitCode.TRACKING: "MLflow store unreachable, or lacking the experiment or parent run",
    ExitCode.ARCHIVE_INVALID: "verify-archive found a missing, extra or changed file, or no readable archive",
    ExitCode.WRITE_FAILED: "a file could not be written (disk full, read-only folder): fix it and rerun",
    ExitCode.RUN_RESULT_INVALID: "a result file (a run's metrics.json, a table, setup.json) is missing, unreadable "
                                 "or changed since it was written (the message names it and the fix)",
    ExitCode.REQUEUE: "stopped by SIGTERM or SIGUSR1 (preemption, time limit) after a checkpoint: rerun to resume",
}


class ConfigError(ValueError):
    """A configuration problem, with a message that names the setting and the fix."""


class ScenarioError(ConfigError):
    """The scenario asks for more than the dataset holds (tasks, classes, images)."""


class OutOfMemoryError(ConfigError):
    """The run's settings ask for more memory than the device has; the message names the settings that size it."""


class DatasetError(RuntimeError):
    """A prepared dataset is missing, incomplete or corrupt."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class TrainingFailedError(RuntimeError):
    """A loss exploded or the network collapsed, and ``runtime.on_training_failure`` is ``stop``."""


class TrackingError(RuntimeError):
    """The MLflow store cannot be reached, or lacks what a run needs (an experiment or parent run)."""


class ArchiveError(RuntimeError):
    """An archive to verify is missing or is not a readable tar.gz."""


class OutputError(RuntimeError):
    """A file could not be written for a reason outside the program (``safe_io.WriteError`` says which)."""


class RunResultError(RuntimeError):
    """A file an earlier job wrote and a later one reads (a run's metrics.json, a table, a figure, the MLflow
    setup.json) is missing, unreadable or changed since it was written."""


class Preempted(RuntimeError):
    """Training stopped on request (SIGTERM, SIGUSR1) after writing a checkpoint; a rerun resumes from it."""


ERROR_CODES: dict[type[BaseException], ExitCode] = {
    ConfigError: ExitCode.CONFIG,
    DatasetError: ExitCode.DATA,
    NonFiniteLossError: ExitCode.TRAINING_FAILED,
    TrainingFailedError: ExitCode.TRAINING_FAILED,
    TrackingError: ExitCode.TRACKING,
    ArchiveError: ExitCode.ARCHIVE_INVALID,
    OutputError: ExitCode.WRITE_FAILED,
    RunResultError: ExitCode.RUN_RESULT_INVALID,
    Preempted: ExitCode.REQUEUE,
}


def exit_code(exc: BaseException) -> ExitCode | None:
    """The exit code of an error reported without a traceback; None for any other exception."""
    for cls, code in ERROR_CODES.items():
        if isinstance(exc, cls):
            return code
    return None


def exit_codes_help() -> str:
    return "exit codes:\n" + "\n".join(f"  {int(code):<3} {code.meaning}" for code in ExitCode)
