"""The installed package: what it exports, its exceptions, its stubs."""

from __future__ import annotations

import pathlib
import sys

import pytest

import interlock

EXCEPTIONS = [
    "LockTimeout",
    "InvalidToken",
    "NotFound",
    "SessionExpired",
    "LockLost",
    "Deadlock",
    "AlreadyHeld",
    "EngineClosed",
    "Cancelled",
    "ConnectionLost",
    "PermissionDenied",
]


@pytest.mark.embedded_only
def test_the_installed_package_is_imported_not_the_source_tree() -> None:
    installed = pathlib.Path(interlock.__file__).resolve()
    assert pathlib.Path(sys.prefix).resolve() in installed.parents
    assert "site-packages" in installed.parts


@pytest.mark.embedded_only
def test_all_names_exactly_the_public_api() -> None:
    assert sorted(interlock.__all__) == sorted(
        ["Engine", "Session", "Lease", "Ticket", "Event", "Subscription", "Error", "__version__"]
        + ["Server", "connect"]
        + EXCEPTIONS
    )
    for name in interlock.__all__:
        assert hasattr(interlock, name), name


@pytest.mark.embedded_only
def test_the_compiled_module_is_private() -> None:
    assert interlock.Engine.__module__ == "interlock"
    assert interlock._interlock.Engine is interlock.Engine


@pytest.mark.embedded_only
def test_stubs_and_marker_are_installed() -> None:
    here = pathlib.Path(interlock.__file__).parent
    assert (here / "py.typed").is_file()
    assert (here / "_interlock.pyi").is_file()


@pytest.mark.embedded_only
@pytest.mark.parametrize("name", EXCEPTIONS)
def test_every_error_derives_from_interlock_error(name: str) -> None:
    cls = getattr(interlock, name)
    assert issubclass(cls, interlock.Error)
    assert issubclass(cls, Exception)
    assert cls.__module__ == "interlock"


@pytest.mark.embedded_only
@pytest.mark.parametrize(
    "name, builtin",
    [
        ("LockTimeout", TimeoutError),
        ("InvalidToken", PermissionError),
        ("NotFound", KeyError),
        ("ConnectionLost", ConnectionError),
        ("PermissionDenied", PermissionError),
    ],
)
def test_errors_are_also_the_builtin_a_caller_would_catch(name: str, builtin: type) -> None:
    assert issubclass(getattr(interlock, name), builtin)


@pytest.mark.embedded_only
def test_errors_are_distinct_classes() -> None:
    classes = [getattr(interlock, n) for n in EXCEPTIONS]
    assert len(set(classes)) == len(classes)
    for a in classes:
        for b in classes:
            assert a is b or not issubclass(a, b)


def test_an_engine_error_is_raised_as_its_class(eng: interlock.Engine) -> None:
    s = eng.session("a")
    s.acquire("r")
    with pytest.raises(interlock.AlreadyHeld) as err:
        s.acquire("r")
    assert "r" in str(err.value)
    with pytest.raises(TimeoutError):
        eng.session("b").acquire("r", timeout=0)


def test_a_token_given_as_a_role_is_not_shown_in_the_error() -> None:
    token = "SuperSecretToken-1234567890"
    with interlock.Engine() as eng:
        with pytest.raises(ValueError, match="unknown role") as e:
            # The ROLE TOKEN order of a tokens file, given the wrong way round.
            eng.serve("127.0.0.1:0", tokens={"admin": token})  # type: ignore[dict-item]
    assert token not in str(e.value)
