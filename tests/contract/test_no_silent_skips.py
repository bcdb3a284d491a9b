"""No test skips itself: a missing tool fails the test naming its package (`tests.support.tools`)."""

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
FORBIDDEN = ("pytest" + ".skip", "skip" + "if(", "importor" + "skip", "mark." + "skip", "mark." + "xfail")


def test_no_test_skips_or_expects_failure():
    offenders = [
        f"{path.relative_to(TESTS)}: {word}"
        for path in TESTS.rglob("*.py")
        for word in FORBIDDEN
        if word in path.read_text()
    ]
    assert not offenders, offenders
