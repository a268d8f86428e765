"""The one exception tlcli raises for anything a user can fix."""


class TlcliError(Exception):
    """A problem with the user's input or environment, told in one line.

    The message names the bad value, what was expected and how to fix it. The command line
    prints it as `Error: <message>` and exits non-zero, without a traceback.
    """

    exit_code = 2
