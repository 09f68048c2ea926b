"""Host input throughput: img/s per CPU core of the train pipeline, the full recipe at 224.

  python benchmarks/input_bench.py                    # 1 and 2 workers, 512 generated JPEGs
  python benchmarks/input_bench.py --workers 1 2 4 8 --images 2048

Generates ImageNet-like JPEGs (random crops of scikit-learn's two sample photos, 400-500 px wide,
quality 95, ~75-110 KB) into a temporary image folder and times `train_iterator` on it: Grain
workers each decoding, drawing timm's RandomResizedCrop box and shipping the uint8 crop on a
448 x 448 canvas; batches of 128 through shared memory. The rest of the recipe (resize, flip,
RandAugment, normalise, erasing, Mixup/CutMix) runs on the accelerator, not on these cores.
Per core = images per CPU-second spent by the pipeline's processes (this one and its workers,
user + system time): what one core sustains, whatever else shares the machine. Wall-clock img/s
is printed beside it and equals workers x per core only on an idle host with a core per worker.
"""
import argparse
import io
import itertools
import os
import sys
import tempfile
import time

import numpy as np
import psutil
from PIL import Image
from sklearn.datasets import load_sample_images

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vig_jax import data  # noqa: E402

TF_DATA_PER_CORE = 176  # the tf.data pipeline, same recipe and machine, 2026-11-25


def write_images(root, count, seed=0):
  """`count` JPEGs in 10 class folders; returns their mean size in bytes."""
  photos = load_sample_images().images
  rng = np.random.default_rng(seed)
  sizes = []
  for i in range(count):
    photo = photos[i % len(photos)]
    h, w = int(rng.integers(333, 427)), int(rng.integers(400, 501))
    top, left = rng.integers(0, photo.shape[0] - h + 1), rng.integers(0, photo.shape[1] - w + 1)
    buffer = io.BytesIO()
    Image.fromarray(photo[top:top + h, left:left + w]).save(buffer, "JPEG", quality=95)
    os.makedirs(os.path.join(root, f"c{i % 10}"), exist_ok=True)
    with open(os.path.join(root, f"c{i % 10}", f"{i}.jpg"), "wb") as f:
      f.write(buffer.getvalue())
    sizes.append(buffer.tell())
  return float(np.mean(sizes))


def _cpu_seconds():
  """User + system CPU time of this process and its (worker) processes so far."""
  processes = [psutil.Process()] + psutil.Process().children(recursive=True)
  return sum(sum(p.cpu_times()[:2]) for p in processes)


def images_per_second(root, workers, batch_size, batches):
  """(wall-clock img/s, img per CPU-second) of `batches` train batches after a warm-up."""
  it = data.train_iterator(source="folder", folder=root, eval_fraction=0.0, num_workers=workers,
                           batch_size=batch_size, image_size=224, seed=0)
  for _ in range(2 + workers):  # workers start and fill their buffers
    next(it)
  cpu, start = _cpu_seconds(), time.perf_counter()
  for _ in itertools.islice(it, batches):
    pass
  images = batch_size * batches
  rates = images / (time.perf_counter() - start), images / (_cpu_seconds() - cpu)
  it.close()
  return rates


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
  parser.add_argument("--images", type=int, default=512)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--batches", type=int, default=12)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as root:
    mean_bytes = write_images(root, args.images)
    print(f"{args.images} JPEGs, mean {mean_bytes / 1e3:.0f} KB; {os.cpu_count()} CPU cores")
    print(f"load average {os.getloadavg()[0]:.1f}")
    print("| workers | img/s per core | vs tf.data (176 per core) | wall-clock img/s |")
    print("|---|---|---|---|")
    for workers in args.workers:
      wall, per_core = images_per_second(root, workers, args.batch_size, args.batches)
      print(f"| {workers} | {per_core:.0f} | {per_core / TF_DATA_PER_CORE:.1f}x | {wall:.0f} |",
            flush=True)


if __name__ == "__main__":
  main()
