"""The `pmc-curate` command line: one sub-command per stage (the registry, pipeline/stages/__init__.py)
and a few tools (run, status, demo, teacher-server).

Every command's flags are its `Config` dataclass (pipeline.core.options): the parser is built from it,
and the parsed flags become that Config, the same object a flow step's YAML keys become. Flags a Beam
stage does not know are passed to Apache Beam as pipeline options (`--runner`, `--direct_num_workers`,
Dataflow/Flink flags ...); any other unknown flag is an error that names it. Command modules are
imported lazily, so `pmc-curate parse` never pays for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Any

from pipeline import __version__, stages
from pipeline.core import logs, options, secrets, signals, storage
from pipeline.core.errors import ConfigError, DryRunFinished, LockLostError


@dataclass(frozen=True)
class Command:
    """A sub-command: the module defining `Config` and `run(config, beam_argv)`, its help, and whether
    flags it does not know go to Beam."""

    module: str
    help: str
    beam: bool


# The commands that are not stages: they drive the stages (run, demo), read their state (status), or
# serve the offline teacher the annotate stage starts.
TOOLS: dict[str, Command] = {
    "run": Command("pipeline.flow.run", "run every stage from one YAML config, resuming finished stages", beam=True),
    "status": Command("pipeline.flow.status", "show each stage of a work directory, its counts and rejects", beam=False),
    "demo": Command("pipeline.flow.demo", "run every stage end to end on the embedded sample", beam=True),
    "teacher-server": Command("pipeline.teacher.server",
                              "serve the offline SmolLM2 teacher on 127.0.0.1 (OpenAI protocol)", beam=False),
}


def commands() -> dict[str, Command]:
    """Every sub-command: the stages in the order they run, then the tools."""
    out = {s.name: Command(s.module, s.summary, s.beam) for s in stages.STAGES}
    out.update(TOOLS)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pmc-curate",
        description="Curate PubMed Central Open Access into labelled biomedical pretraining data.",
        epilog="Unknown --flags of a Beam stage (parse, annotate, propagate) go to Apache Beam as pipeline options.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"pmc-curate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in commands().items():
        sub.add_parser(name, help=command.help, add_help=False)
    return parser


def command_parser(name: str, config_cls: type) -> argparse.ArgumentParser:
    """The parser of `pmc-curate NAME`, built from its Config; a Beam command's help lists the runner presets."""
    command = commands()[name]
    epilog = None
    if command.beam:
        from beam_runners.presets import PRESETS

        epilog = ("Beam options (any other --flag Beam knows passes through): --runner, --direct_num_workers, ...\n"
                  "--preset NAME expands to a runner's flags (yours win over the preset's):\n"
                  + "\n".join(f"  {n:<20} {desc}" for n, (desc, _) in PRESETS.items()))
    parser = argparse.ArgumentParser(prog=f"pmc-curate {name}", description=command.help, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_arguments(parser, config_cls)
    return parser


def check_unknown(name: str, config_cls: type, beam: bool, extra: list[str]) -> None:
    """ConfigError naming every argument neither the command nor (for a Beam stage) Beam takes, with the
    closest flags of either."""
    from beam_runners import options as beam_options

    own = [options.flag_name(f, o) for f, o, _ in options.fields(config_cls) if not o.positional]
    if beam:
        unknown, known = beam_options.unknown_flags(extra), own + beam_options.flag_names()
    else:
        unknown, known = storage.strip_flags(extra), own  # storage's --s3_* flags were taken above
    if unknown:
        hints = "".join(options.suggest(a.split("=", 1)[0], known) for a in unknown if a.startswith("-"))
        them = "them" if len(unknown) > 1 else "it"
        who = f"neither `pmc-curate {name}` nor Beam takes {them}" if beam else \
            f"`pmc-curate {name}` does not take {them} (it does not run on Beam)"
        raise ConfigError(f"unknown argument{'s' if len(unknown) > 1 else ''} {' '.join(unknown)}{hints}: {who}; "
                          "see --help")


def _dry_run(beam_argv: list[str]) -> bool:
    """`--dry-run FILE` among a Beam stage's pass-through flags (beam_runners/dryrun.py)."""
    return any(a == "--dry-run" or a.startswith("--dry-run=") for a in beam_argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # First pass: find the command without importing every stage.
    ns, rest = build_parser().parse_known_args(argv)
    logs.setup(ns.verbose)
    storage.register_env_secrets()
    secrets.register_urls(argv)  # a password inside --base-url or a URL input: masked wherever it appears
    command = commands()[ns.command]
    try:
        with signals.as_interrupt():  # SIGTERM, SIGHUP: the Ctrl-C path (markers, lock, cleanup)
            return _run_command(ns, command, rest)
    except ConfigError as e:
        print(f"pmc-curate {ns.command}: error: {secrets.redact(str(e))}", file=sys.stderr)
        return 2
    except DryRunFinished as e:
        print(f"pmc-curate {ns.command}: {e}")
        return 0
    except LockLostError as e:
        print(f"pmc-curate {ns.command}: error: {secrets.redact(str(e))}", file=sys.stderr)
        return 3
    except signals.Terminated as e:
        print(f"pmc-curate {ns.command}: {e}; finished work is kept, run again to resume", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"pmc-curate {ns.command}: interrupted; finished work is kept, run again to resume", file=sys.stderr)
        return 130
    except Exception as e:
        lost = storage.unreachable(e)  # an object store gone mid-stage: one line, not pages of retries' traceback
        if lost is None:
            raise
        print(f"pmc-curate {ns.command}: error: {lost}", file=sys.stderr)
        return 4


def _run_command(ns: argparse.Namespace, command: Any, rest: list[str]) -> int:
    """Configure storage, parse the command's flags and run it (in W/logs/<stage>.log for a stage)."""
    # Beam's --s3_* flags configure the storage layer once for every command, Beam or not; Beam
    # stages still receive them (workers read them from the pipeline options).
    rest = storage.configure(rest)
    module = importlib.import_module(command.module)
    args, extra = command_parser(ns.command, module.Config).parse_known_args(rest)
    check_unknown(ns.command, module.Config, command.beam, extra)
    if not command.beam:
        extra = []
    config = options.from_namespace(module.Config, args)
    if ns.command not in stages.BY_NAME or (command.beam and _dry_run(extra)):
        return int(module.run(config, extra) or 0)  # a dry run writes nothing to W: no log, lock or marker
    from pipeline.flow.by_hand import run_by_hand

    with logs.to_workdir(config.workdir, ns.command):  # a stage's full log: W/logs/<stage>.log
        # The flow's rules by hand too: the lease, running/finished markers, no unfinished inputs.
        return run_by_hand(ns.command, module, config, extra, rest)


if __name__ == "__main__":
    sys.exit(main())
