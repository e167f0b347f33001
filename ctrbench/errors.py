"""The error hierarchy.

Every error a user can cause is a `CtrbenchError` whose message already names the file, key, plugin or
run at fault, so the CLI can print it as one line and exit with code 2 without a traceback.
"""

from __future__ import annotations


class CtrbenchError(Exception):
    """Base of every error caused by input (suite files, plugins, data, the environment), not by a bug."""


class SuiteError(CtrbenchError):
    """A suite file is malformed, has an unknown key, a wrong type, or expands to nothing."""


class PluginError(CtrbenchError):
    """A plugin failed to import, registered a duplicate name, or a name is unknown."""


class DataError(CtrbenchError):
    """A data file is missing, corrupt (checksum mismatch) or malformed."""


class RunError(CtrbenchError):
    """One run failed (for example its loss became NaN); the other runs of a suite go on."""


class StoreError(CtrbenchError):
    """The result store holds something unreadable or inconsistent (a run directory without its spec, a
    result file that is not a JSON object, truncated predictions): the message names the directory and points
    to ``ctrbench store check --fix``. Also an ambiguous run-id prefix or an unknown ``--rerun``."""


class WriteError(CtrbenchError):
    """A file could not be written: the disk is full, a quota is exceeded, the file system is read-only, or
    permissions forbid it. The message names the path (and the free space there); nothing stored before is
    lost."""


class UsageError(CtrbenchError):
    """A command-line value is out of range (``--threads 0``, ``--device tpu``)."""
