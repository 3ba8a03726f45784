"""One rank of a torchrun job: ``python -m bench.distributed.rank RUN_DIR --suffix ws<N>``.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous; this joins the process group
(gloo on CPU, nccl on CUDA; every collective bounded by the run's ``dist_timeout_s``), trains every
model on every requested backend data-parallel, and on global rank 0 writes each training cell
into RUN_DIR (the run folder of the node that hosts rank 0). Each node's local rank 0 leaves
``ranks-<node>.json`` there, so the launcher can tell whether this node wrote the results."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from bench import BenchError
from bench.config.build import config_from_dict
from bench.data.mnist import make_split, resolve_mnist
from bench.distributed.ddp import ddp_train
from bench.distributed.launch import per_rank_batch
from bench.engines.backends import get_backend
from bench.plumbing.children import die_with
from bench.storage.plan import stored_plan
from bench.storage.results import RunWriter, write_json
from bench.training.train import TrainJob


def main(argv: list[str] | None = None) -> int:
    die_with(os.getppid())  # torchrun's agent: a rank never outlives it (nor, through it, the run)
    p = argparse.ArgumentParser(prog="bench.distributed.rank")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--suffix", required=True, help="cell id suffix, e.g. ws2")
    args = p.parse_args(argv)
    meta = json.loads((args.run_dir / "meta.json").read_text(encoding="utf-8"))
    cfg = config_from_dict(meta["config"])
    device = {get_backend(b).device for b in cfg.backends}.pop()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if device == "cuda" else "gloo",
                            timeout=timedelta(seconds=cfg.distributed.dist_timeout_s))
    rank = dist.get_rank()
    try:
        mnist = resolve_mnist(cfg.data_dir, fill_cache=False)
        writer = RunWriter(args.run_dir)
        cells = [k for k in stored_plan(meta) if k.suffix == args.suffix]  # this world size's, from the plan
        for model in dict.fromkeys(k.model for k in cells):
            tcfg = cfg.train_for(model)
            train = make_split(mnist.train_images, mnist.train_labels, tcfg.normalization, device, tcfg.limit_train)
            test = make_split(mnist.test_images, mnist.test_labels, tcfg.normalization, device, tcfg.limit_test)
            for name in (k.backend for k in cells if k.model == model):
                b = get_backend(name)
                settings = b.configure(cfg.backend_options)
                batch = per_rank_batch(cfg, model, dist.get_world_size())
                out = ddp_train(TrainJob(model, b, train, test, tcfg, cfg.seed, cfg.backend_options), batch)
                if out is not None:
                    tables, net = out
                    tables["summary"] = tables["summary"].assign(
                        **settings, dist_backend=dist.get_backend(), scaling_batch=cfg.distributed.scaling_batch,
                        nnodes=cfg.distributed.nnodes, nproc_per_node=int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
                        torch_threads_per_rank=torch.get_num_threads())
                    weights = io.BytesIO()
                    torch.save({k: v.cpu() for k, v in net.state_dict().items()}, weights)
                    writer.write(model, b, "train", tables, files={"model.pt": weights.getvalue()},
                                 suffix=args.suffix)
                    print(f"rank 0: {model} {name} x{dist.get_world_size()}: "
                          f"{tables['summary'].train_samples_per_s.iloc[0]:,.0f} samples/s", flush=True)
        if int(os.environ.get("LOCAL_RANK", 0)) == 0:
            node = int(os.environ.get("GROUP_RANK", 0))
            write_json(args.run_dir / f"ranks-{args.suffix}-node{node}.json",
                       {"node_rank": node, "wrote_results": rank == 0, "world_size": dist.get_world_size()})
        dist.barrier()
    except BenchError as e:
        print(f"error: rank {rank}: {e}", file=sys.stderr)
        return 2
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    code = main()
    # Leave without interpreter finalization: gloo's worker threads can still hold work objects that
    # reference Python objects (DDP's communication-hook futures), and destroying those while the
    # interpreter is torn down aborts the process ("terminate called without an active exception",
    # SIGABRT) after every result is written. The process group is destroyed and the files closed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
