"""The project's error types. Every error the package raises on purpose derives from
`SfmReweightError`, so that a command line (`cli.run`) ends on one line `error: <message>` instead
of a traceback; each also derives from the builtin type it used to be, for callers that catch that.
Errors of one module's own job live there (`image_io.ImageReadError`, `model.weights.CheckpointError`,
`ground_truth.DatasetFormatError`, `matchers.MatcherUnavailable`)."""


class SfmReweightError(Exception):
    """Base of the project's errors; the message says what is wrong and names the file."""


class InputError(SfmReweightError, ValueError):
    """Bad input found before any work; the one-line message names the file (and line)."""


class MissingEntryError(SfmReweightError, KeyError):
    """An image or pair that a file does not hold; the message names the file."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
