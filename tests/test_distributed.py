"""Data-parallel training through torchrun on this CPU (gloo): two ranks against one process, a
two-node launch over loopback, a rank that dies, and the launch errors."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.storage.results import read_run

from .conftest import ROOT

TINY_DDP = ["--launcher", "torchrun", "--models", "mlp", "--backends", "cpu-fp32", "--limit-train", "2048",
            "--limit-test", "300", "--epochs", "1", "--batch-size", "128", "--dropout", "off", "--threads", "1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _runs(out):
    return [p for p in out.iterdir() if p.is_dir()]


@pytest.fixture(scope="module")
def scaling_run(mnist_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    assert main(["run", *TINY_DDP, "--scaling", "1,2", "--data-dir", str(mnist_path), "--out", str(out)]) == 0
    (run_dir,) = _runs(out)
    return run_dir


@pytest.mark.slow
def test_two_ranks_reach_the_weights_of_one_process(scaling_run):
    cells = scaling_run / "cells"
    one = torch.load(cells / "mlp__cpu-fp32__train_ws1" / "model.pt")
    two = torch.load(cells / "mlp__cpu-fp32__train_ws2" / "model.pt")
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-5
    rt = read_run(scaling_run)
    s = rt["summary"].set_index("world_size")
    assert set(s.index) == {1, 2} and (s.global_batch == 128).all() and list(s.loc[[1, 2], "per_rank_batch"]) == [
        128, 64]
    assert (s.dist_backend == "gloo").all() and s.loc[2, "test_accuracy"] == pytest.approx(s.loc[1, "test_accuracy"])
    assert (s.train_samples_per_s > 0).all() and s.loc[2, "slowest_rank"] in (0, 1)
    ranks = rt["ranks"]
    assert sorted(ranks.groupby("cell_id").size()) == [1, 2] and (ranks.allreduce_s > 0).all()
    assert (ranks.peak_rss_bytes > 0).all() and (s.peak_rss_bytes == ranks.groupby("cell_id").peak_rss_bytes.max()
                                                  .sort_index().to_numpy()).all()
    meta = rt.meta[next(iter(rt.meta))]["distributed"]
    assert meta["world_sizes"] == [1, 2] and meta["dist_backend"] == "gloo" and meta["results_here"]
    assert [r["rank"] for r in meta["rank_layout"]["ws2"]] == [0, 1]
    assert {r["local_rank"] for r in meta["rank_layout"]["ws2"]} == {0, 1}
    from reports.summary import summary_table

    assert "cpu-fp32 ×1" in summary_table(rt["summary"]) and "cpu-fp32 ×2" in summary_table(rt["summary"])
    html = (scaling_run / "report.html").read_text()
    assert "Data-parallel scaling" in html and "scaling-table" in html and "ranks-table" in html


@pytest.mark.slow
def test_scaling_efficiency_in_the_report_tables(scaling_run):
    from reports.scaling_section import scaling_frame

    d = scaling_frame(read_run(scaling_run)["summary"]).set_index("world_size")
    assert d.loc[1, "efficiency"] == pytest.approx(1.0)
    assert d.loc[2, "efficiency"] == pytest.approx(d.loc[2, "train_samples_per_s"] / (2 * d.loc[1,
                                                   "train_samples_per_s"]))


def _cli(*args):
    return [sys.executable, "-m", "bench", *args]


@pytest.mark.slow
def test_two_node_launch_over_loopback(mnist_path, tmp_path):
    port = _free_port()
    procs = [subprocess.Popen(_cli("run", *TINY_DDP, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-endpoint",
                                   f"127.0.0.1:{port}", "--data-dir", str(mnist_path), "--out", str(tmp_path / f"n{i}"),
                                   "--no-report"), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    written = [r for i in range(2) for r in _runs(tmp_path / f"n{i}") if (r / "cells").is_dir()]
    assert len(written) == 1  # global rank 0's node
    s = read_run(written[0])["summary"]
    assert list(s.world_size) == [2] and list(s.nnodes) == [2]
    assert sum("ran on another node" in out for out, _ in outs) == 1


@pytest.mark.slow
def test_a_killed_rank_ends_the_run_with_its_name(mnist_path, tmp_path):
    """Rank 1 is killed while the world-size-2 job trains (after rank 0 has said its first epoch
    ended, with three to go): the run ends within the bound, names the rank, keeps the
    world-size-1 cell and exits 4."""
    timeout = 20
    proc = subprocess.Popen(_cli("run", "--launcher", "torchrun", "--scaling", "1,2", "--models", "mlp", "--backends",
                                 "cpu-fp32", "--epochs", "4", "--limit-test", "300", "--threads", "1",
                                 "--dist-timeout-s", str(timeout),
                                 "--data-dir", str(mnist_path), "--out", str(tmp_path), "--no-report"),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    said = []
    for line in proc.stderr:  # the launcher echoes rank 0's lines as they come
        said.append(line)
        if line.startswith("rank 0: mlp cpu-fp32 x2: epoch 1/4"):
            break
    assert said and said[-1].startswith("rank 0: mlp cpu-fp32 x2: epoch 1/4"), "".join(said)
    victims = []
    for pid in os.listdir("/proc"):
        try:
            env = (Path("/proc") / pid / "environ").read_bytes().split(b"\0")
            cmdline = (Path("/proc") / pid / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"LOCAL_RANK=1" in env and b"WORLD_SIZE=2" in env and str(tmp_path).encode() in cmdline:
            victims.append(int(pid))
    assert len(victims) == 1, "".join(said)
    os.kill(victims[0], signal.SIGKILL)
    killed_at = time.time()
    _, rest = proc.communicate(timeout=timeout + 60)
    err = "".join(said) + rest
    assert time.time() - killed_at < timeout + 30
    assert proc.returncode == 4, err
    assert "rank 1 (local rank 1" in err and "killed by SIGKILL" in err
    (run_dir,) = _runs(tmp_path)
    s = read_run(run_dir)["summary"].set_index("world_size")
    assert s.loc[1, "status"] == "ok" and s.loc[2, "status"] == "error" and "rank 1" in s.loc[2, "reason"]


def test_launch_errors_are_named_before_anything_runs(mnist_path, tmp_path, capsys):
    from bench.config.build import build_config
    from bench.distributed.launch import check

    cfg = build_config({"launcher": "torchrun", "backends": "cuda-fp32", "nproc_per_node": 2})
    with pytest.raises(Exception, match="2 ranks per node on CUDA need 2 GPUs; this node has 1"):
        check(cfg, cuda_devices=1)
    cfg = build_config({"launcher": "torchrun", "backends": "cpu-fp32", "scaling": "1,3", "batch_size": 128})
    with pytest.raises(Exception, match="does not split over 3 ranks"):
        check(cfg)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["run", *TINY_DDP, "--rdzv-endpoint", f"127.0.0.1:{port}", "--data-dir", str(mnist_path),
                     "--out", str(tmp_path / "busy")]) == 2
    err = capsys.readouterr().err
    assert f"rendezvous endpoint 127.0.0.1:{port} cannot be used" in err and not (tmp_path / "busy").exists()
    assert main(["run", "--nproc-per-node", "2"]) == 2
    assert "need launcher = torchrun" in capsys.readouterr().err


@pytest.mark.slow
def test_a_rendezvous_nobody_joins_ends_within_the_bound(mnist_path, tmp_path, capsys):
    port = _free_port()
    start = time.time()
    rc = main(["run", *TINY_DDP, "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}", "--dist-timeout-s", "5",
               "--data-dir", str(mnist_path), "--out", str(tmp_path), "--no-report"])
    assert rc == 4 and time.time() - start < 90
    assert f"the rendezvous at 127.0.0.1:{port} could not be completed within 5 s" in capsys.readouterr().err


TORCHRUN_FAILURE = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
======================================================
bench.distributed.rank FAILED
------------------------------------------------------
Failures:
[1]:
  time      : 2026-11-27_11:03:56
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 13900)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 13900
------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-27_11:03:56
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -6 (pid: 13899)  (SIGABRT)
  error_file: <N/A>
  traceback : Signal 6 (SIGABRT) received by PID 13899
======================================================"""


def test_the_rank_that_died_is_named_not_the_one_that_aborted_after_it():
    """torchrun's "first observed failure" can be a rank that aborted because its peer vanished."""
    from bench.config.build import build_config
    from bench.distributed.launch import diagnose

    cfg = build_config({"launcher": "torchrun", "backends": "cpu-fp32", "nproc_per_node": 2})
    line = diagnose(TORCHRUN_FAILURE, cfg, 2)
    assert line.startswith("rank 1 (local rank 1 on localhost) of 2 ended (killed by SIGKILL)")
    assert "rank 0 then ended (killed by SIGABRT)" in line
    assert "exit code 3" in diagnose(TORCHRUN_FAILURE.replace("-9 (pid", "3 (pid"), cfg, 2)


def test_a_collective_timeout_says_a_peer_stopped_answering():
    from bench.config.build import build_config
    from bench.distributed.launch import diagnose

    cfg = build_config({"launcher": "torchrun", "backends": "cpu-fp32", "nproc_per_node": 2, "dist_timeout_s": 5})
    log = ("[rank0]: RuntimeError: [gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 5000ms for recv "
           "operation to complete\n" + TORCHRUN_FAILURE.replace("-9 (pid: 13900)  (SIGKILL)", "-9 (pid: 13900)")
           .replace("-6 (pid: 13899)  (SIGABRT)", "1 (pid: 13899)"))
    line = diagnose(log, cfg, 2)
    assert "rank 0 (local rank 0 on localhost) of 2 ended (exit code 1): a collective timed out after 5 s" in line


def test_a_rank_that_lost_its_peer_is_not_named_first():
    from bench.config.build import build_config
    from bench.distributed.launch import diagnose

    cfg = build_config({"launcher": "torchrun", "backends": "cpu-fp32", "nproc_per_node": 2})
    log = ("[rank0]: RuntimeError: [gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:4711\n"
           + TORCHRUN_FAILURE.replace("-6 (pid: 13899)  (SIGABRT)", "1 (pid: 13899)"))
    assert diagnose(log, cfg, 2).startswith("rank 1 (local rank 1 on localhost) of 2 ended (killed by SIGKILL)")


def test_a_rank_stopped_by_torchrun_is_named_after_the_one_that_aborted():
    from bench.config.build import build_config
    from bench.distributed.launch import diagnose

    cfg = build_config({"launcher": "torchrun", "backends": "cpu-fp32", "nproc_per_node": 2})
    log = (TORCHRUN_FAILURE.replace("-9 (pid: 13900)  (SIGKILL)", "-6 (pid: 13900)  (SIGABRT)")
           .replace("-6 (pid: 13899)  (SIGABRT)", "-15 (pid: 13899)  (SIGTERM)"))
    assert diagnose(log, cfg, 2).startswith("rank 1 (local rank 1 on localhost) of 2 ended (killed by SIGABRT); "
                                            "rank 0 then ended (killed by SIGTERM)")


def _processes_of(out: Path) -> list[int]:
    """The pids of torchrun and its ranks working for a run in ``out`` (their command lines name it)."""
    pids = []
    for pid in os.listdir("/proc"):
        try:
            cmdline = (Path("/proc") / pid / "cmdline").read_bytes()
        except OSError:
            continue
        if pid.isdigit() and str(out).encode() in cmdline and b"bench.distributed.rank" in cmdline:
            pids.append(int(pid))
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_torchrun_run_stopped_takes_torchrun_and_its_ranks_with_it(sig, mnist_path, tmp_path):
    """SIGTERM or SIGKILL to a data-parallel run while its two ranks train: within 3 s (SIGKILL) or
    the run's own stop (SIGTERM: torchrun is told at once, exit 143, well before its 20 epochs) no
    rank nor torchrun is left."""
    proc = subprocess.Popen(_cli("run", *TINY_DDP, "--nproc-per-node", "2", "--epochs", "20", "--limit-train", "6000",
                                 "--data-dir", str(mnist_path), "--out", str(tmp_path), "--no-report"),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    said = []
    for line in proc.stderr:
        said.append(line)
        if line.startswith("rank 0: mlp cpu-fp32 x2: epoch 1/20"):
            break
    assert len(_processes_of(tmp_path)) >= 3, "".join(said)  # torchrun and its two ranks
    signalled = time.monotonic()
    proc.send_signal(sig)
    _, rest = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and time.monotonic() - signalled < 10, "".join(said) + rest
    end = time.monotonic() + 3
    while _processes_of(tmp_path) and time.monotonic() < end:
        time.sleep(0.1)
    assert not _processes_of(tmp_path)
