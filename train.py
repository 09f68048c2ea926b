"""Train or evaluate ViG.

  python train.py --config=configs/imagenet.py:vig_s --workdir=/tmp/vig_s
  python train.py --config=configs/digits.py --workdir=/tmp/digits --mode=eval

Exit codes: 0 done; 1 an error (one line on stderr, nothing on disk lost); 75 stopped by SIGTERM or
Ctrl-C after saving the current step (rerun the same command to resume); 130 a second Ctrl-C.
"""
import json
import logging as logging_std
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from vig_jax import trainer, workdir, xla_flags

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: the checkpoint of the current step is saved; run again to resume
EXIT_INTERRUPTED = 130  # a second Ctrl-C

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/imagenet.py:vig_s.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics and results go here.")
flags.DEFINE_enum("mode", "train", ["train", "eval"], "Train (then evaluate) or only evaluate.")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietOrbax(logging_std.Filter):
  """Orbax logs each checkpoint step at INFO; keep the console for progress and warnings."""

  def filter(self, record):
    return record.levelno >= logging_std.WARNING or "orbax" not in record.pathname


def main(argv):
  logging.get_absl_handler().addFilter(_QuietOrbax())
  xla_flags.set_default_flags()
  if len(argv) > 1:
    sys.exit(f"train.py: error: unexpected arguments {argv[1:]}")
  run = trainer.train_and_evaluate if FLAGS.mode == "train" else trainer.evaluate
  try:
    results = run(FLAGS.config, FLAGS.workdir)
  except (trainer.ConfigError, trainer.NonFiniteError, workdir.WorkdirError,
          FileNotFoundError) as e:
    sys.exit(f"train.py: error: {e}")
  except KeyboardInterrupt:
    print("train.py: stopped by a second Ctrl-C; rerun to resume from the newest complete "
          "checkpoint", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)
  if results is None:
    leave_cluster()
    sys.exit(EXIT_PREEMPTED)
  logging.info("results: %s", results)
  print(json.dumps(results))
  leave_cluster()


def leave_cluster():
  """The processes of a multi-process run leave together, while process 0 (which hosts the
  coordination service) is still up: one that finished first and exited left the others retrying
  it at their exit (seen with two processes on one 2-GPU host). Only after a run that ended the
  same way everywhere (done, or stopped at one agreed step): after an error the others may never
  arrive."""
  if jax.distributed.is_initialized():
    jax.distributed.shutdown()


def parse_flags(argv):
  """absl flag parsing, with a bad --config override (unknown field, wrong type) as one line."""
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as e:  # ml_collections: a field the config does not have
    field = str(e).strip("\"'")
    used = [a for a in argv if a.startswith("--config.") and field in a.split("=")[0]]
    sys.exit(f"train.py: error: the config has no field {field!r} ({', '.join(used) or argv})")
  except (flags.Error, TypeError, ValueError) as e:
    # A get_config error reaches here with the config file's traceback inside the message: keep
    # its first line (which flag) and its last (the error).
    lines = str(e).strip().splitlines()
    sys.exit(f"train.py: error: {lines[0]} {lines[-1]}" if len(lines) > 1 else f"train.py: error: {e}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
