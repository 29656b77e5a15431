#!/usr/bin/env bash
# Issue 6 measurements on one GPU, in the order that fits a 30-minute device session.
# Each line prints a markdown table; paste them into benchmarks/RESULTS.md with the device, date
# and commit. Every table's first row is its own baseline (same process, same inputs).
#
#   bash benchmarks/gpu_suite.sh 2>&1 | tee gpu_suite.log
set -u
B="python benchmarks/bench_sampler.py --config paper --device cuda"
run() { echo; echo "\$ $*"; timeout 560 "$@" || echo "(exit $?)"; }

# 1. baseline (fp32, batch 1) against batches and bf16, through the product's code path
run $B --batches 1 4 16 32 --precisions fp32 bf16
# 2. one option at a time at 16 members, bf16
run $B --batches 16 --precisions fp32 bf16 --channels-last
run $B --batches 16 --precisions fp32 bf16 --attn-head-channels 64
run $B --batches 16 --precisions fp32 bf16 --compile
run $B --batches 16 --precisions fp32 bf16 --compile reduce-overhead --attn-head-channels 64
# 3. memory: fit the batch to the card, with and without activation checkpointing
run $B --batches 64 --precisions bf16 --max-memory auto
run $B --batches 64 --precisions bf16 --max-memory auto --checkpoint
# 4. year runs: batches filled across times against time by time (default model, default
#    sampler; rows fitted to the card's memory)
run python benchmarks/bench_time_batches.py --device cuda --times 32 --members 2 4 8
