"""What the trainer needs to know about a dataset before reading it."""
import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Sizes over all processes; `skipped_files` lists unreadable images left out."""

  num_classes: int
  num_train: int
  num_eval: int
  skipped_files: tuple[str, ...] = ()
