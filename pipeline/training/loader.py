"""Stream committed output shards into student training (no Ray needed).

    from pipeline.training.loader import GroundingLoader, GroundingShards
    data = GroundingShards("s3://bucket/out", tokenizer, seed=0, epochs=None)
    loader = GroundingLoader(data, batch_size=8, num_workers=4)
    for batch in loader:            # batch["pixel_values"], ["pixel_mask"], ["input_ids"], ["targets"]
        ...
        ckpt = loader.state_dict()  # {"seed", "epoch", "samples_seen", "workers", ...}
    loader.load_state_dict(ckpt)    # the next batches are the ones that would have come next

Order is a pure function of (seed, epoch, rank, world size, worker count): each epoch the shard
list is permuted with the seed and dealt to the global workers (rank * num_workers + worker), each
worker shuffles its samples through a seeded buffer. A saved position is, per worker, the epoch and
the number of samples it has handed out; resuming replays the worker's cheap label stage and drops
that many samples before any image is decoded.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import warnings
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.io.committed import ShardRef, complete_shards, image_extension, iter_tar_members, why_no_shards
from pipeline.training.targets import ImageConfig, LabelFilter, TextConfig, load_image, normalize_pixels, prepare_labels

__all__ = ["GroundingLoader", "GroundingShards", "ImageConfig", "LabelFilter", "TextConfig", "collate", "normalize_pixels"]


def _distributed() -> tuple[int, int]:
    """(rank, world_size) from torch.distributed when initialised, else the torchrun env vars."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class GroundingShards(IterableDataset):
    """Samples of committed output shards as detector-ready dicts (see `pipeline.training.targets`).

    epochs=None streams forever. resampled=True draws each worker's shards with replacement per
    epoch (WebDataset's "resampled" mode: every worker has data even with fewer shards than
    workers); otherwise each epoch is a permutation of the shards split across workers.
    """

    def __init__(
        self,
        spec: str | list[str],
        tokenizer: Any,
        *,
        label_filter: LabelFilter = LabelFilter(),
        text: TextConfig = TextConfig(),
        image: ImageConfig = ImageConfig(),
        shuffle_buffer: int = 1000,
        seed: int = 0,
        epochs: int | None = 1,
        resampled: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.tokenizer = tokenizer
        self.label_filter, self.text, self.image = label_filter, text, image
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.epochs = epochs
        self.resampled = resampled
        env_rank, env_world = _distributed()
        self.rank = env_rank if rank is None else rank
        self.world_size = env_world if world_size is None else world_size
        self.resume: dict[int, tuple[int, int]] = {}
        self.resume_listings: dict[int, list[str]] = {}  # worker -> the shards its resumed epoch used
        self.report_listings = False  # set by GroundingLoader, whose collate carries them
        self.start_epoch = 0

    def shards(self) -> list[ShardRef]:
        """Committed shards now (re-listed every epoch, so a running job's new shards join)."""
        return complete_shards(self.spec, read_manifests=False)

    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        wid, nworkers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.rank * nworkers + wid, self.world_size * nworkers

    def listed(self, listing: list[str] | None = None) -> list[ShardRef]:
        """The committed shards in order; with `listing` (from a checkpoint), exactly those, so
        that an epoch resumes over the shards it began with even if more were committed since."""
        refs = sorted(self.shards(), key=lambda r: (r.root, r.shard))
        if listing is None:
            return refs
        wanted = set(listing)
        refs = [r for r in refs if shard_key(r) in wanted]
        if len(refs) != len(wanted):
            gone = sorted(wanted - {shard_key(r) for r in refs})
            raise ValueError(f"cannot resume: shard {gone[0]} of the checkpoint's epoch is no longer committed under {self.spec}")
        return refs

    def epoch_shards(self, epoch: int, worker: int, workers: int, listed: list[ShardRef] | None = None) -> list[ShardRef]:
        refs = list(self.listed() if listed is None else listed)
        if not refs:
            return []
        if self.resampled:
            rng = random.Random(f"{self.seed}/{epoch}/{worker}/resample")
            return [rng.choice(refs) for _ in range(math.ceil(len(refs) / workers))]
        random.Random(f"{self.seed}/{epoch}/shards").shuffle(refs)
        return refs[worker::workers]

    def _labelled(self, refs: list[ShardRef]) -> Iterator[dict[str, Any]]:
        """Label stage: JSON record -> filtered target, image bytes carried along undecoded."""
        for ref in refs:
            for member in iter_tar_members(ref.tar_url):
                ext = image_extension(member)
                if ext is None or "json" not in member:
                    continue
                record = json.loads(member["json"])
                prepared = prepare_labels(record, self.tokenizer, self.label_filter, self.text)
                if prepared is not None:
                    prepared["image_bytes"] = member[ext]
                    prepared["shard"] = ref.shard
                    yield prepared

    def _shuffled(self, items: Iterator[dict[str, Any]], rng: random.Random) -> Iterator[dict[str, Any]]:
        buffer: list[dict[str, Any]] = []
        for item in items:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(item)
                continue
            i = rng.randrange(len(buffer))
            buffer[i], item = item, buffer[i]
            yield item
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, workers = self._worker()
        epoch, skip = self.resume.get(worker, (self.start_epoch, 0))
        pinned = self.resume_listings.get(worker) if worker in self.resume else None
        while self.epochs is None or epoch < self.epochs:
            listed = self.listed(pinned)
            refs = self.epoch_shards(epoch, worker, workers, listed)
            if not refs:  # no committed shard (yet), or fewer shards than workers without resampling
                return
            announce = self.report_listings
            rng = random.Random(f"{self.seed}/{epoch}/{worker}/buffer")
            for n, prepared in enumerate(self._shuffled(self._labelled(refs), rng), start=1):
                if n <= skip:
                    continue
                sample = load_image(prepared, prepared.pop("image_bytes"), self.image)
                sample["position"] = (worker, epoch, n)
                if announce:  # the loader's checkpoint records which shards this epoch spans
                    sample["listing"], announce = [shard_key(r) for r in listed], False
                yield sample
            epoch, skip, pinned = epoch + 1, 0, None


def collate(samples: list[dict[str, Any]], pad_token_id: int = 0, size_divisor: int = 1) -> dict[str, Any]:
    """Pad images (with a pixel mask, 1 = real pixel) and token ids (with an attention mask).

    Per-sample targets stay a list of dicts, since their box counts differ:
    `boxes` (normalised cxcywh), `boxes_xyxy` (resized pixels), `positive_map` [N, max_text_len],
    `scores`, `phrase_ids`, `size`, `orig_size`, `key`.
    """
    height = max(s["image"].shape[1] for s in samples)
    width = max(s["image"].shape[2] for s in samples)
    height, width = (math.ceil(v / size_divisor) * size_divisor for v in (height, width))
    pixels = torch.empty(len(samples), 3, height, width, dtype=samples[0]["image"].dtype)  # padding zeroed below
    pixel_mask = torch.zeros(len(samples), height, width, dtype=torch.long)
    text_len = max(len(s["input_ids"]) for s in samples)
    input_ids = torch.full((len(samples), text_len), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros(len(samples), text_len, dtype=torch.long)
    targets = []
    for i, s in enumerate(samples):
        _, h, w = s["image"].shape
        pixels[i, :, :h, :w] = s["image"]
        pixels[i, :, h:, :] = 0
        pixels[i, :, :h, w:] = 0
        pixel_mask[i, :h, :w] = 1
        input_ids[i, : len(s["input_ids"])] = s["input_ids"]
        attention_mask[i, : len(s["input_ids"])] = 1
        targets.append(
            {
                "key": s["key"], "boxes": s["boxes"], "boxes_xyxy": s["boxes_xyxy"], "scores": s["scores"],
                "phrase_ids": s["phrase_ids"], "positive_map": s["positive_map"], "size": s["size"],
                "orig_size": s["frame"], "caption": s["caption"], "prompt": s["prompt"], "phrases": s["phrases"],
            }
        )
    return {
        "pixel_values": pixels,
        "pixel_mask": pixel_mask,
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": torch.zeros_like(input_ids),
        "targets": targets,
        "positions": [s["position"] for s in samples],
        "listings": {s["position"][0]: (s["position"][1], s["listing"]) for s in samples if "listing" in s},
    }


def shard_key(ref: ShardRef) -> str:
    return f"{ref.root}/{ref.shard}"


class GroundingLoader:
    """A DataLoader over `GroundingShards` that knows its position and can resume from it.

    Batches come from the DataLoader workers in turn (0, 1, ..., skipping workers that ran dry).
    After a resume the DataLoader starts its turn at worker 0 again, so this class holds back at
    most one batch per worker and hands batches out in the turn order of the interrupted run: the
    same batches in the same order. A worker is known to have run dry when the DataLoader's turn
    skips it.

    Iterating again continues from the current position (it does not restart the stream), so
    iterate once over a multi-epoch or infinite (epochs=None) stream. DDP ranks can see different
    sample counts per epoch; infinite streams with a fixed number of steps avoid uneven ends.
    """

    def __init__(self, dataset: GroundingShards, batch_size: int, num_workers: int = 0, size_divisor: int = 1, **kwargs: Any) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        pad = getattr(dataset.tokenizer, "pad_token_id", 0) or 0
        self.dataloader = DataLoader(
            dataset, batch_size=batch_size, num_workers=num_workers,
            collate_fn=functools.partial(collate, pad_token_id=pad, size_divisor=size_divisor), **kwargs,
        )
        self.positions: dict[int, tuple[int, int]] = {}
        self.listings: dict[int, tuple[int, list[str]]] = {}  # worker -> (epoch, its shards)
        dataset.report_listings = True
        self.samples_seen = 0
        self.next_worker = 0

    def _local(self, batch: dict[str, Any]) -> int:
        return batch["positions"][0][0] - self.dataset.rank * max(1, self.num_workers)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        workers = max(1, self.num_workers)
        held: dict[int, list[dict[str, Any]]] = {w: [] for w in range(workers)}
        dry: set[int] = set()
        last_arrival = workers - 1
        if not self.positions and not self.dataset.listed():
            warnings.warn(
                f"GroundingLoader has no data: {why_no_shards(self.dataset.spec)}; give the output root "
                "of a labelling job (or its wds/*.tar), whose shards appear as their manifests are written",
                stacklevel=2,
            )
        self.dataset.resume = dict(self.positions)
        self.dataset.resume_listings = {w: listing for w, (epoch, listing) in self.listings.items()
                                        if self.positions.get(w, (None, 0))[0] == epoch}
        for batch in self.dataloader:
            arrived = self._local(batch)
            skipped = (last_arrival + 1) % workers
            while skipped != arrived:
                dry.add(skipped)
                skipped = (skipped + 1) % workers
            last_arrival = arrived
            held[arrived].append(batch)
            while len(dry) < workers:
                if self.next_worker in dry:
                    self.next_worker = (self.next_worker + 1) % workers
                elif held[self.next_worker]:
                    yield self._consume(held[self.next_worker].pop(0), workers)
                else:
                    break
        start = self.next_worker
        for offset in range(workers):
            for batch in held[(start + offset) % workers]:
                yield self._consume(batch, workers)

    def _consume(self, batch: dict[str, Any], workers: int) -> dict[str, Any]:
        for worker, epoch, n in batch["positions"]:
            self.positions[worker] = (epoch, n)
        self.listings.update(batch.get("listings", {}))
        self.samples_seen += len(batch["positions"])
        self.next_worker = (self._local(batch) + 1) % workers
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.dataset.seed,
            "epoch": min((e for e, _ in self.positions.values()), default=self.dataset.start_epoch),
            "samples_seen": self.samples_seen,
            "workers": {str(w): list(p) for w, p in self.positions.items()},
            "listings": {str(w): [e, listing] for w, (e, listing) in self.listings.items()},
            "next_worker": self.next_worker,
            "num_workers": self.num_workers,
            "world_size": self.dataset.world_size,
            "rank": self.dataset.rank,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position saved by `state_dict` (same seed, ranks and worker count required)."""
        for name, mine in (("seed", self.dataset.seed), ("num_workers", self.num_workers),
                           ("world_size", self.dataset.world_size), ("rank", self.dataset.rank)):
            if state[name] != mine:
                raise ValueError(f"cannot resume: saved {name}={state[name]!r}, this loader has {mine!r}")
        self.positions = {int(w): (int(p[0]), int(p[1])) for w, p in state["workers"].items()}
        self.listings = {int(w): (int(e), list(listing)) for w, (e, listing) in state.get("listings", {}).items()}
        self.samples_seen = int(state["samples_seen"])
        self.next_worker = int(state["next_worker"])
        self.dataset.start_epoch = int(state["epoch"])
