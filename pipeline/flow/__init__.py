"""The flow: every stage in order from one YAML file, resumable.

    run.py      prepare (each step's keys -> its stage's Config) and run the steps; `pmc-curate run`
    config.py   the YAML file: workdir, Beam options, steps
    markers.py  what each step read, how it was configured and what it wrote: W/_stages/<step>.json
    lock.py     one flow per work directory (a lease with a heartbeat)
    by_hand.py  a stage typed by hand follows the same lease and markers
    debris.py   what killed runs left (Beam temp folders, half-written files), collected by the next writer
    status.py   `pmc-curate status`: each stage's state, counts and rejects
    demo.py     `pmc-curate demo`: the flow on the embedded sample

Everything here reads the stage registry (pipeline/stages/__init__.py); nothing here knows a stage by name.
"""

from pipeline.flow.config import FlowConfig, PreparedStep, Step, beam_to_argv, config_from_dict, load_config
from pipeline.flow.markers import read_marker, write_marker
from pipeline.flow.run import prepare, run_flow

__all__ = ["FlowConfig", "PreparedStep", "Step", "beam_to_argv", "config_from_dict", "load_config", "prepare",
           "read_marker", "run_flow", "write_marker"]
