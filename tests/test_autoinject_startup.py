"""Start-up behaviour of the installed product (SPEC "Switching it on and off",
"Start-up rules"): laziness, the switch and the config, idempotence, -S/-I,
the PEP 829 ``.start`` file, packaging (wheel, uninstall, ``pip install -e``).

Every test runs real interpreters of a venv that has the wheel installed.
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from truststore import _hook
from venvs import Venv, copy_tree_for_build, make_venv, product_environ

pytestmark = pytest.mark.slow

# Prints: ssl.SSLContext's module, then the hook's decision.
STATE = (
    "import ssl, sys\n"
    "ran = 'truststore_autoinject' in sys.modules\n"
    "print(ssl.SSLContext.__module__)\n"
    "print(__import__('truststore_autoinject_rules').decision() if ran else None)\n"
)
INJECTED = "truststore._api"
NOT_INJECTED = "ssl"


def state(result: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    assert result.returncode == 0, result.stderr
    module, decision = result.stdout.splitlines()
    return module, decision


def warning_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line]


# -- laziness -------------------------------------------------------------------


def test_python_c_pass_imports_only_the_tiny_gate(installed: Venv) -> None:
    code = (
        "import sys\n"
        "print(' '.join(sorted(sys.modules)))\n"
        "print(' '.join(getattr(f, '__name__', type(f).__name__) for f in sys.meta_path))\n"
    )
    result = installed.run(code=code)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    modules_line, finders_line = result.stdout.splitlines()
    modules = set(modules_line.split())
    # The gate ran (so this is not vacuous) and installed itself as the
    # first finder, once (site processed the .pth twice)...
    assert "truststore_autoinject" in modules
    assert finders_line.split()[0] == "truststore_autoinject"
    assert finders_line.split().count("truststore_autoinject") == 1
    # ...without loading TLS, the package, a backend or an HTTP stack: one
    # module of ours at start-up (issue 13), none of the truststore package,
    # not even the gate's rules.
    heavy = {
        "ssl",
        "_ssl",
        "truststore",
        "truststore._hook",
        "truststore._api",
        "truststore._openssl",
        "truststore._common",
        "urllib3",
        "requests",
        "http.client",
        "pip",
        "importlib.util",
        "ctypes",
    }
    assert modules & heavy == set()
    ours = {m for m in modules if "truststore" in m}
    assert ours == {"truststore_autoinject"}


@pytest.mark.parametrize("config", [None, "on", "off"])
def test_importtime_shows_only_the_gate(installed: Venv, config: str | None) -> None:
    """On or off, by the variable or by the config file: one module of ours."""
    if config is not None:
        installed.config.write_text(f"inject = {config}\n")
    for env in (product_environ(), product_environ(TRUSTSTORE_INJECT="0")):
        result = installed.run("-X", "importtime", code="pass", env=env)
        assert result.returncode == 0
        imported = [
            line.rsplit("|", 1)[1].strip()
            for line in result.stderr.splitlines()
            if line.startswith("import time:") and "|" in line
        ]
        assert "site" in imported  # the parse found the table
        ours = [name for name in imported if "truststore" in name]
        assert ours == ["truststore_autoinject"]
        assert "ssl" not in imported and "_ssl" not in imported


def test_tools_that_walk_the_finders_accept_a_module_as_one(installed: Venv) -> None:
    """The gate module itself is the finder (no class to create at start):
    importlib's and pkgutil's walks over sys.meta_path skip what it lacks
    (invalidate_caches, find_distributions) and still work."""
    code = (
        "import importlib, importlib.metadata, importlib.util, pkgutil, sys\n"
        "importlib.invalidate_caches()\n"
        "names = {d.metadata['Name'] for d in importlib.metadata.distributions()}\n"
        "print(sys.meta_path[0].__name__, 'truststore-auto' in names,\n"
        "      importlib.util.find_spec('json').name,\n"
        "      any(m.name == 'truststore_autoinject' for m in pkgutil.iter_modules()))\n"
        "import ssl\n"
        "print(ssl.SSLContext.__module__)\n"
    )
    result = installed.run(code=code)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.split() == ["truststore_autoinject", "True", "json", "True", INJECTED]


def test_injection_happens_when_the_program_imports_ssl(installed: Venv) -> None:
    code = (
        "import sys\n"
        "before = 'truststore._api' in sys.modules\n"
        "import ssl, truststore\n"
        "print(before, ssl.SSLContext is truststore._api.InjectedSSLContext)\n"
    )
    result = installed.run(code=code)
    assert result.stdout.split() == ["False", "True"], result.stderr


# -- the switch variable -----------------------------------------------------------

ON_VALUES = ["1", "true", "yes", "on", "TRUE", "Yes", " On ", "\ttrue\n"]
OFF_VALUES = ["0", "false", "no", "off", "FALSE", "No", " OFF ", "\toff\n"]


@pytest.mark.parametrize("value", ON_VALUES + OFF_VALUES, ids=repr)
def test_switch_values(installed: Venv, value: str) -> None:
    # A config saying the opposite proves the variable outranks it.
    enabled = value in ON_VALUES
    installed.config.write_text(f"inject = {'off' if enabled else 'on'}\n")
    result = installed.run(code=STATE, env=product_environ(TRUSTSTORE_INJECT=value))
    assert warning_lines(result) == []
    module, decision = state(result)
    assert module == (INJECTED if enabled else NOT_INJECTED)
    assert decision == repr((enabled, f"environment variable TRUSTSTORE_INJECT={value.strip()}"))


@pytest.mark.parametrize("value", ["maybe", "", "2", "enable", "o n"], ids=repr)
def test_bad_switch_value_warns_once_and_is_ignored(installed: Venv, value: str) -> None:
    result = installed.run(code=STATE, env=product_environ(TRUSTSTORE_INJECT=value))
    lines = warning_lines(result)
    assert len(lines) == 1 and lines[0].startswith("truststore-auto: "), lines
    assert f"TRUSTSTORE_INJECT={value!r}" in lines[0]
    assert state(result) == (INJECTED, repr((True, "default (on)")))

    # Ignored means the next rule decides: here, the config file.
    installed.config.write_text("inject = off\n")
    result = installed.run(code=STATE, env=product_environ(TRUSTSTORE_INJECT=value))
    assert len(warning_lines(result)) == 1
    assert state(result) == (NOT_INJECTED, repr((False, f"config file {installed.config}")))


def test_variable_reaches_subprocesses(installed: Venv) -> None:
    code = (
        "import subprocess, sys\n"
        "child = subprocess.run([sys.executable, '-c', 'import ssl; print(ssl.SSLContext.__module__)'],"
        " capture_output=True, text=True)\n"
        "print(child.stdout.strip())\n"
    )
    result = installed.run(code=code, env=product_environ(TRUSTSTORE_INJECT="off"))
    assert result.stdout.split() == [NOT_INJECTED], result.stderr


# -- the config file -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "variable", "enabled", "rule"),
    [
        (None, None, True, "default (on)"),
        ("off", None, False, "config"),
        ("on", None, True, "config"),
        ("off", "1", True, "variable"),
        ("on", "0", False, "variable"),
    ],
)
def test_precedence_variable_then_config_then_default(
    installed: Venv, config: str | None, variable: str | None, enabled: bool, rule: str
) -> None:
    if config is not None:
        installed.config.write_text(f"# written by hand\n\ninject = {config}\n")
    env = product_environ() if variable is None else product_environ(TRUSTSTORE_INJECT=variable)
    result = installed.run(code=STATE, env=env)
    assert warning_lines(result) == []
    expected_rule = {
        "default (on)": "default (on)",
        "config": f"config file {installed.config}",
        "variable": f"environment variable TRUSTSTORE_INJECT={variable}",
    }[rule]
    assert state(result) == (INJECTED if enabled else NOT_INJECTED, repr((enabled, expected_rule)))
    status = _cli(
        installed, "status", **({} if variable is None else {"TRUSTSTORE_INJECT": variable})
    )
    assert f"decided by: {expected_rule} -> {'on' if enabled else 'off'}" in status.stdout
    assert "start-up:" not in status.stdout


def _cli(venv: Venv, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return venv.run("-m", "truststore", *args, env=product_environ(**env))


def test_enable_disable_round_trip(installed: Venv) -> None:
    config = installed.config
    assert not config.exists()

    disabled = _cli(installed, "disable")
    assert disabled.returncode == 0 and disabled.stderr == ""
    assert disabled.stdout == f"injection off for this environment: wrote {config} (was: default)\n"
    # Human-readable, in sys.prefix, world-readable like the rest of the venv.
    assert config.parent == installed.prefix
    assert "inject = off" in config.read_text().splitlines()
    assert stat.S_IMODE(config.stat().st_mode) == 0o644
    first_inode = config.stat().st_ino
    assert state(installed.run(code=STATE)) == (
        NOT_INJECTED,
        repr((False, f"config file {config}")),
    )
    status = _cli(installed, "status").stdout
    assert "injection:  inactive in this interpreter" in status
    assert f"decided by: config file {config} -> off" in status

    enabled = _cli(installed, "enable")
    assert enabled.stdout == f"injection on for this environment: wrote {config} (was: off)\n"
    # Written to a temporary file and renamed over the old one: a reader sees
    # the old or the new file, never half of one.  Nothing is left behind.
    assert config.stat().st_ino != first_inode
    leftovers = [p.name for p in installed.prefix.iterdir() if p.name.startswith(".truststore")]
    assert leftovers == []
    assert state(installed.run(code=STATE))[0] == INJECTED

    again = _cli(installed, "enable")
    assert again.stdout == f"injection already on in {config} (unchanged)\n"

    overridden = _cli(installed, "disable", TRUSTSTORE_INJECT="1")
    assert overridden.returncode == 0
    assert "TRUSTSTORE_INJECT=1 is set in this shell and takes precedence" in overridden.stdout
    assert state(installed.run(code=STATE))[0] == NOT_INJECTED


def test_enable_that_cannot_write_is_one_line_and_changes_nothing(installed: Venv) -> None:
    installed.config.mkdir()  # os.replace cannot put a file over a directory
    result = _cli(installed, "enable")
    assert result.returncode == 2
    assert result.stdout == ""
    # The interpreter's own start-up warns about the unusable config (its one
    # line), then the command fails with one line of its own.
    assert result.stderr.splitlines() == [
        f"truststore-auto: ignoring {installed.config}: not a regular file",
        f"truststore: error: cannot write {installed.config}: Is a directory",
    ]
    assert installed.config.is_dir() and list(installed.config.iterdir()) == []
    assert [p for p in installed.prefix.iterdir() if p.name.startswith(".truststore")] == []


def test_corrupt_config_warns_once_and_the_default_applies(installed: Venv) -> None:
    installed.config.write_bytes(b"\x00\xff garbage [section]\ninject: maybe\n")
    result = installed.run(code="import sys, ssl; print(ssl.SSLContext.__module__); sys.exit(5)")
    assert result.returncode == 5
    lines = warning_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"truststore-auto: ignoring {installed.config}")
    assert result.stdout.strip() == INJECTED


# What `enable`/`disable` write (and the one bare line) is decided by the gate
# alone, at the cost of one short read; every other file, however close, by
# the full rules (truststore_autoinject_rules, which loads
# truststore_autoinject_config for them), with the same verdict.
GATE_ALONE = {
    _hook.format_config(True): True,
    _hook.format_config(False): False,
    "inject = on\n": True,
    "inject = off\n": False,
}
FULL_RULES = {
    "inject = off": False,
    "inject=off\n": False,
    " inject = off\n": False,
    "inject = OFF\n": False,
    "# mine\ninject = off\n": False,
    "inject = off\r\n": False,
    "\ufeffinject = off\n": False,
    "inject = off\ninject = on\n": True,
    "inject = on\n# caf\u00e9\n": True,
    "": None,
    "inject = maybe\n": None,
    "# only a comment\n": None,
}
RULES_LOADED = (
    "import sys\n"
    "print('truststore_autoinject_rules' in sys.modules,"
    " 'truststore_autoinject_config' in sys.modules)\n"
    "import truststore_autoinject_rules as rules\n"
    "print(rules.decision())\n"
)


@pytest.mark.parametrize("fast", [True, False], ids=["gate-alone", "full-rules"])
def test_config_forms_the_gate_decides_alone(installed: Venv, fast: bool) -> None:
    for text, setting in (GATE_ALONE if fast else FULL_RULES).items():
        installed.config.write_bytes(text.encode())
        result = installed.run(code=RULES_LOADED)
        assert result.returncode == 0, (text, result.stderr)
        loaded, decision = result.stdout.splitlines()
        assert loaded.split() == [str(not fast)] * 2, text
        if setting is None:  # malformed or no setting: the default, maybe a warning
            assert decision == repr((True, "default (on)")), text
        else:
            assert decision == repr((setting, f"config file {installed.config}")), text
            assert result.stderr == "", (text, result.stderr)
        if not fast:  # the full rules agree with the parser the CLI uses
            body = text.removeprefix("\ufeff")
            try:
                parsed = _hook.parse_config(body)
            except ValueError:
                parsed = None
            assert parsed is setting, text


def test_config_with_a_bom_and_crlf_still_reads(installed: Venv) -> None:
    """A file saved by a Windows editor: BOM and CRLF line ends."""
    installed.config.write_bytes(b"\xef\xbb\xbf# corp image\r\ninject = OFF\r\n")
    result = installed.run(code=STATE)
    assert warning_lines(result) == []
    assert state(result)[0] == NOT_INJECTED


# -- idempotence, exit status, -S / -I ---------------------------------------------


def test_site_processes_the_pth_twice_and_it_patches_and_warns_once(installed: Venv) -> None:
    probe = installed.site_packages / "truststore_test_probe.pth"
    probe.write_text(
        "import sys; sys.__dict__['_probe_runs'] = sys.__dict__.get('_probe_runs', 0) + 1\n"
    )
    try:
        code = (
            "import sys, ssl, truststore._api as api\n"
            "finders = [f for f in sys.meta_path if getattr(f, '__name__', '') == 'truststore_autoinject']\n"
            "wrapper = ssl.__spec__.loader.exec_module\n"
            "print(sys._probe_runs, len(finders), ssl.SSLContext is api.InjectedSSLContext,\n"
            "      getattr(wrapper.__wrapped__, '_truststore_wrapper', False))\n"
        )
        result = installed.run(code=code, env=product_environ(TRUSTSTORE_INJECT="bogus"))
    finally:
        probe.unlink()
    # This venv's site really runs every .pth twice (cpython#75723)...
    assert result.stdout.split()[0] == "2", (result.stdout, result.stderr)
    # ...and there is one finder, one injection, one wrapper, one warning.
    assert result.stdout.split()[1:] == ["1", "True", "False"]
    assert len(warning_lines(result)) == 1


# A .pth sorted before ours records the source of every compile() site does
# after it (the audit event "compile" covers exec of a string; 3.13's site
# passes the line without its newline): its own line shows up once (site's
# second pass; the hook is added in the first), ours should show up once too.
# Added once, however often site runs the probe.
COMPILE_PROBE = (
    "import sys;hasattr(sys,'_probe_sources') or (setattr(sys,'_probe_sources',[]),"
    "sys.addaudithook(lambda e,a:e=='compile'and sys._probe_sources.append(a[0])))\n"
)


@pytest.mark.parametrize("extra", [{}, {"TRUSTSTORE_INJECT": "0"}, {"TRUSTSTORE_INJECT": "maybe"}])
def test_site_runs_our_pth_line_once_and_every_other_pth_as_before(
    installed: Venv, extra: dict[str, str]
) -> None:
    """The gate skips site's second pass over its own .pth (a venv runs
    each .pth twice: about a fifth of the start-up cost), on or off; every
    other .pth still runs twice, and site's addpackage is its own again."""
    ours = (installed.site_packages / "truststore_autoinject.pth").read_text()
    probe = installed.site_packages / "a_truststore_test_probe.pth"
    probe.write_text(COMPILE_PROBE)
    try:
        code = (
            "import site, sys\n"
            "def text(s): return (s.decode() if isinstance(s, bytes) else s).strip()\n"
            "sources = [text(s) for s in sys._probe_sources]\n"
            f"print(sources.count({ours.strip()!r}), sources.count({COMPILE_PROBE.strip()!r}),\n"
            "      site.addpackage.__module__, site.addpackage.__qualname__,\n"
            "      'truststore_autoinject' in sys.modules)\n"
        )
        result = installed.run(code=code, env=product_environ(**extra))
    finally:
        probe.unlink()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1", "site", "addpackage", "True"], result.stderr
    assert len(warning_lines(result)) == (1 if extra.get("TRUSTSTORE_INJECT") == "maybe" else 0)


@pytest.mark.parametrize("extra", [{}, {"TRUSTSTORE_INJECT": "nonsense"}], ids=["clean", "warning"])
def test_exit_status_and_user_errors_are_untouched(installed: Venv, extra: dict[str, str]) -> None:
    env = product_environ(**extra)
    result = installed.run(code="import ssl, sys; sys.exit(3)", env=env)
    assert result.returncode == 3
    assert len(warning_lines(result)) == (1 if extra else 0)
    crash = installed.run(code="import ssl\nraise RuntimeError('the user program failed')", env=env)
    assert crash.returncode == 1
    assert crash.stderr.rstrip().endswith("RuntimeError: the user program failed")
    assert "truststore" not in crash.stderr.replace("truststore-auto: ", "").split("Traceback")[1]


def test_dash_S_means_no_injection_and_dash_I_keeps_it(installed: Venv) -> None:
    no_site = installed.run(
        "-S", code="import ssl, sys; print(ssl.SSLContext.__module__, 'truststore' in sys.modules)"
    )
    assert no_site.stdout.split() == [NOT_INJECTED, "False"], no_site.stderr
    # -I: site still processes site-packages, and TRUSTSTORE_INJECT is not a
    # PYTHON* variable, so it still applies (README "Limits").
    assert state(installed.run("-I", code=STATE))[0] == INJECTED
    off = installed.run("-I", code=STATE, env=product_environ(TRUSTSTORE_INJECT="0"))
    assert state(off)[0] == NOT_INJECTED


# PEP 829 (Python 3.15+): site reads each line of a .start file, resolves it
# with pkgutil.resolve_name and calls the result with no arguments.  Done here
# by hand in a fresh interpreter, with site's .pth processing (-S: none, as on
# a Python that ignores .pth import lines; without -S: both, as a 3.15 site
# that runs the .pth line too).
PEP_829_STATE = (
    "import sys, pkgutil\n"
    "# What site does before it reads .start files (-S skipped it): the venv's\n"
    "# prefix and its site-packages.\n"
    "sys.prefix = sys.exec_prefix = sys.argv[3]\n"
    "sys.path.append(sys.argv[1])\n"
    "with open(sys.argv[2], encoding='utf-8') as f:\n"
    "    entries = [line.strip() for line in f if line.strip() and not line.startswith('#')]\n"
    "for entry in entries:\n"
    "    pkgutil.resolve_name(entry)()\n"
    "    pkgutil.resolve_name(entry)()\n"
    "import ssl\n"
    "finders = [f for f in sys.meta_path if getattr(f, '__name__', '') == 'truststore_autoinject']\n"
    "print(ssl.SSLContext.__module__)\n"
    "print(__import__('truststore_autoinject_rules').decision(), len(finders))\n"
)


@pytest.mark.parametrize(
    "env",
    [{}, {"TRUSTSTORE_INJECT": "0"}, {"TRUSTSTORE_INJECT": "perhaps"}, {"config": "off"}],
    ids=["default", "off", "bad-variable", "config-off"],
)
def test_start_entry_behaves_exactly_like_the_pth_line(
    installed: Venv, env: dict[str, str]
) -> None:
    start = installed.site_packages / "truststore_autoinject.start"
    lines = [ln for ln in start.read_text().splitlines() if ln.strip()]
    assert lines == ["truststore_autoinject:startup"]
    if "config" in env:
        installed.config.write_text(f"inject = {env.pop('config')}\n")
    args = (str(installed.site_packages), str(start), str(installed.prefix))
    pth = installed.run(code=STATE, env=product_environ(**env))
    via_start = installed.run(
        "-S", code=PEP_829_STATE, script_args=args, env=product_environ(**env)
    )
    both = installed.run(code=PEP_829_STATE, script_args=args, env=product_environ(**env))
    assert pth.returncode == via_start.returncode == both.returncode == 0, via_start.stderr
    # The same verdict and the same rule either way; one finder however many
    # times the entry and the .pth line ran; the same (at most one) warning.
    module, decision = state(pth)
    finders = 1 if module == INJECTED else 0
    for result in (via_start, both):
        assert result.stdout.splitlines() == [module, f"{decision} {finders}"]
        assert result.stderr == pth.stderr
    assert len(warning_lines(pth)) == (1 if env.get("TRUSTSTORE_INJECT") == "perhaps" else 0)


# -- packaging -------------------------------------------------------------------------


def test_wheel_puts_the_pth_and_start_at_the_root_of_site_packages(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        pth = zf.read("truststore_autoinject.pth").decode()
        start = zf.read("truststore_autoinject.start").decode()
        (record_name,) = [n for n in names if n.endswith(".dist-info/RECORD")]
        record = zf.read(record_name).decode()
        entry_points = zf.read(record_name.replace("RECORD", "entry_points.txt")).decode()
    assert "truststore/_hook.py" in names and "truststore_autoinject.py" in names
    assert "truststore_autoinject_rules.py" in names
    assert "truststore_autoinject_config.py" in names
    # One line; site executes a .pth line only if it starts with "import".
    assert pth.count("\n") == 1 and pth.startswith("import ")
    assert "truststore_autoinject" in pth
    assert start.strip() == "truststore_autoinject:startup"
    # Listed in RECORD, so pip uninstall removes them.
    for name in ("truststore_autoinject.pth", "truststore_autoinject.start"):
        assert re.search(rf"^{re.escape(name)},sha256=", record, re.MULTILINE), record
    assert "truststore = truststore.__main__:main" in entry_points


def _leftovers(venv: Venv) -> list[str]:
    found = [p.name for p in venv.site_packages.iterdir() if "truststore" in p.name.lower()]
    found += [p.name for p in venv.bin.iterdir() if p.name.startswith("truststore")]
    return sorted(found)


def test_pip_uninstall_leaves_nothing_behind(fresh_venv: Callable[[], Venv]) -> None:
    venv = fresh_venv()
    installed = _leftovers(venv)
    assert len(installed) == 8, installed
    assert installed.count("truststore") == 2  # the package and bin/truststore
    assert re.fullmatch(r"truststore_auto-[^-]+\.dist-info", installed[2]), installed
    assert installed[3:] == [
        "truststore_autoinject.pth",
        "truststore_autoinject.py",
        "truststore_autoinject.start",
        "truststore_autoinject_config.py",
        "truststore_autoinject_rules.py",
    ]
    result = subprocess.run(
        [str(venv.python), "-m", "pip", "uninstall", "-y", "-q", "truststore-auto"],
        env=product_environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert _leftovers(venv) == []
    after = venv.run(code="import ssl, sys; print(ssl.SSLContext.__module__); sys.exit(4)")
    assert (after.returncode, after.stdout.strip(), after.stderr) == (4, NOT_INJECTED, "")


def test_package_deleted_under_a_remaining_pth(fresh_venv: Callable[[], Venv]) -> None:
    venv = fresh_venv()
    package = venv.site_packages / "truststore"
    probe = "import ssl, sys; print(ssl.SSLContext.__module__); sys.exit(3)"

    # Half gone: the hook loads, the library does not.  One warning when the
    # program imports ssl; ssl stays the standard library's (which verifies).
    for leftover in [package / "_api.py", *package.glob("__pycache__/_api.*")]:
        leftover.unlink()
    half = venv.run(code=probe)
    assert half.returncode == 3 and half.stdout.strip() == NOT_INJECTED
    lines = warning_lines(half)
    assert len(lines) == 1 and lines[0].startswith("truststore-auto: could not patch ssl")

    # All gone: the gate says so once, with the fix, when ssl is imported;
    # `python -c pass` stays silent and lazy.
    shutil.rmtree(package)
    gone = venv.run(code=probe)
    assert (gone.returncode, gone.stdout.strip()) == (3, NOT_INJECTED)
    lines = warning_lines(gone)
    assert len(lines) == 1 and "truststore/__init__.py is missing" in lines[0], lines
    assert lines[0].endswith("run: pip install --force-reinstall --no-deps truststore-auto")
    quiet = venv.run(code="import sys; print('ssl' in sys.modules)")
    assert (quiet.stdout, quiet.stderr) == ("False\n", "")


def test_editable_install_of_the_working_tree_behaves_the_same(tmp_path: Path) -> None:
    source = copy_tree_for_build(tmp_path / "tree")
    venv = make_venv(tmp_path / "venv")
    venv.pip_install("-e", str(source))
    assert (venv.site_packages / "truststore_autoinject.pth").is_file()
    code = (
        STATE + "import truststore\n"
        "print(truststore.__file__)\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('truststore'))))\n"
    )
    result = venv.run(code=code)
    assert result.returncode == 0, result.stderr
    module, decision, location, loaded = result.stdout.splitlines()
    assert module == INJECTED and decision == repr((True, "default (on)"))
    assert Path(location).is_relative_to(source / "src")
    # The hook is the rules module (checked before the package ran).
    assert "truststore_autoinject_rules" in loaded.split()
    lazy = venv.run(
        code="import sys; print('ssl' in sys.modules, 'truststore_autoinject' in sys.modules)"
    )
    assert lazy.stdout.split() == ["False", "True"]
    off = venv.run(code=STATE, env=product_environ(TRUSTSTORE_INJECT="0"))
    assert state(off)[0] == NOT_INJECTED

    uninstall = subprocess.run(
        [str(venv.python), "-m", "pip", "uninstall", "-y", "-q", "truststore-auto"],
        env=product_environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert uninstall.returncode == 0, uninstall.stderr
    assert _leftovers(venv) == []


def test_not_installed_into_the_test_interpreter() -> None:
    """The suite imports src/ directly; the product must not be installed
    here, or these tests would measure this interpreter, not the venvs."""
    import site

    import truststore

    for directory in [*site.getsitepackages(), site.getusersitepackages()]:
        assert not (Path(directory) / "truststore_autoinject.pth").exists(), directory
    assert Path(truststore.__file__).resolve().is_relative_to(Path(__file__).resolve().parents[1])
