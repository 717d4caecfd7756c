"""Batches that DataLoader worker processes send to the main process through shared memory
reused from batch to batch, not a fresh shared-memory file per batch.

torch sends a worker's batch in new shared memory: zero-filled, faulted in page by page by
the copy into it, mapped again by the main process, unmapped when the batch goes. For clip
batches of a few MB that cost most of what a DataLoader adds to a read (BENCHMARKS.md, "The
cvrl Python package"). A dataset here holds a ``Region`` (``cvrl._cvrl.SharedBatches``, a
memory file mapped by the main process and every worker, so all of them share its pages);
``cvrl.torch.collate`` in a worker fills a slot of it and returns a ``PooledBatch``, which
the DataLoader's queue pickles as the slot's number; the main process gets a plain tensor
viewing the slot, and the slot is free again once that tensor is gone.

Workers started by fork inherit the region; workers started by spawn or forkserver map it
from the descriptor that multiprocessing passes with the pickled dataset. Everything else
falls back to torch's way: a region out of free slots (a training loop holding many
batches), another pickler (``torch.save``), a batch a wrapping ``collate_fn`` replaced or
resized.
"""

from __future__ import annotations

import math
import weakref
from multiprocessing import context as mp_context, reduction
from multiprocessing.reduction import ForkingPickler
from typing import Optional

import numpy as np
import torch
from torch.multiprocessing.reductions import reduce_tensor
from torch.utils.data import get_worker_info

from .. import _cvrl

# Address space each dataset reserves for its workers' batches. Only what slots use becomes
# memory: the batches in flight at once (workers x prefetch x tensors per batch), kept for
# reuse until the dataset goes.
REGION_BYTES = 16 << 30

# Regions of this process by id, for the main process to find the slot a worker names.
_REGIONS: "weakref.WeakValueDictionary[int, _cvrl.SharedBatches]" = weakref.WeakValueDictionary()


class Region:
    """A dataset's shared memory for batches, ``max_bytes`` of address space. Made where the
    dataset is made; a forked worker inherits it, and a worker started by spawn or
    forkserver maps it from the descriptor that goes with the pickled dataset. Pickled for
    anything else (``pickle``, ``copy.deepcopy``), the dataset arrives without one."""

    def __init__(self, max_bytes: int = REGION_BYTES):
        try:
            self.batches: Optional[_cvrl.SharedBatches] = _cvrl.SharedBatches(max_bytes)
        except OSError:
            # No room for the reservation (e.g. strict overcommit): torch's way, as before.
            self.batches = None
        if self.batches is not None:
            _REGIONS[self.batches.id] = self.batches

    def __reduce__(self):
        b = self.batches
        # Only a process being started gets the memory file (multiprocessing passes the
        # descriptor along with the process's arguments).
        if b is None or b.fd is None or mp_context.get_spawning_popen() is None:
            return (_no_region, ())
        return (_attach, (reduction.DupFd(b.fd), b.max_bytes, b.id, b.orphan_secs))


def _no_region() -> Region:
    region = Region.__new__(Region)
    region.batches = None
    return region


def _attach(fd, max_bytes: int, region_id: int, orphan_secs: int) -> Region:
    region = _no_region()
    try:
        region.batches = _cvrl.SharedBatches.attach(fd.detach(), max_bytes, region_id,
                                                    orphan_secs)
    except (OSError, ValueError):
        return region
    _REGIONS[region_id] = region.batches
    return region


class PooledBatch(torch.Tensor):
    """A batch in a slot of a ``Region``, in the worker that filled it. A plain tensor to any
    code in the worker (operations return ``torch.Tensor``); the DataLoader's queue sends it
    as the slot's number."""

    __torch_function__ = torch._C._disabled_torch_function_impl


def empty(shape: tuple[int, ...], like: torch.Tensor) -> Optional[torch.Tensor]:
    """A ``uint8`` tensor of ``shape`` in a free slot of the worker's dataset's region, or
    ``None`` outside a worker, without a region, or without a free slot."""
    info = get_worker_info()
    region = getattr(info.dataset, "_region", None) if info is not None else None
    batches = region.batches if region is not None else None
    if batches is None or like.dtype != torch.uint8 or like.device.type != "cpu":
        return None
    numel = math.prod(shape)
    slot = batches.claim(numel)
    if slot is None:
        return None
    out = torch.from_numpy(np.asarray(slot)).view(shape)
    out._cvrl_slot = slot  # kept with the tensor: the slot frees when both go
    return out


def finish(out: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    """``out`` (from ``empty``) permuted to ``order``, as the ``PooledBatch`` a worker
    returns."""
    slot = out._cvrl_slot
    batch = out.permute(order).as_subclass(PooledBatch)
    batch._cvrl_sent = (slot, tuple(out.shape), order,
                        (batch.data_ptr(), batch.shape, batch.stride()))
    return batch


def _reduce(batch: PooledBatch):
    slot, shape, order, view = batch._cvrl_sent
    plain = batch.as_subclass(torch.Tensor)
    if (plain.data_ptr(), plain.shape, plain.stride()) != view:
        # Changed in place since collate made it (resize_, set_): send it as torch would.
        return reduce_tensor(plain)
    entry, sender = slot.send()
    return (_receive, (slot.region_id, entry, sender, len(slot), shape, order))


def _receive(region_id: int, entry: int, sender: int, nbytes: int, shape, order) -> torch.Tensor:
    batches = _REGIONS.get(region_id)
    if batches is None:
        raise RuntimeError(
            f"a DataLoader worker sent a batch in shared memory {region_id:#x}, which this "
            f"process does not have: collate with cvrl.torch.collate in the process that made "
            f"the dataset")
    slot = batches.receive(entry, sender, nbytes)
    return torch.from_numpy(np.asarray(slot)).view(shape).permute(order)


ForkingPickler.register(PooledBatch, _reduce)
