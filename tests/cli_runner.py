"""Running the ``rnnspec`` command in the test's own process, as the CLI tests do."""

from rnnspec.spec import cli


def rnnspec(capsys, *args):
    """``rnnspec ARGS`` in this process: (exit code, stdout, stderr); a traceback of ours fails the test."""
    try:
        code = cli.main(list(args))
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return code, out, err
