"""Runs Python with tensorflow uninstallable, as on a machine without it: every import finder
answers "not installed" for it (a None in sys.modules would not do: tfds reads a present
sys.modules entry as "tensorflow is loaded"). At exit the process reports on stderr whether
tensorflow was imported anyway."""
import sys

PRELUDE = """
import atexit, sys

class _WithoutTensorflow:
  def __init__(self, finder):
    self._finder = finder

  def find_spec(self, name, path=None, target=None):
    if name.partition(".")[0] == "tensorflow":
      return None
    return self._finder.find_spec(name, path, target)

  def __getattr__(self, name):
    return getattr(self._finder, name)

sys.meta_path[:] = [_WithoutTensorflow(f) for f in sys.meta_path]
atexit.register(lambda: print("tensorflow imported:", "tensorflow" in sys.modules, file=sys.stderr))
"""
REPORT = "tensorflow imported: False"


def code_command(code):
  """argv that runs `code` without tensorflow."""
  return [sys.executable, "-c", PRELUDE + code]


def script_command(script, *args):
  """argv that runs `script` (as __main__, with `args`) without tensorflow."""
  return code_command(f"import runpy\nsys.argv = {[script, *args]!r}\n"
                      f"runpy.run_path({script!r}, run_name='__main__')\n")
