#!/bin/sh
# FT soak (root): the namespace topology's failover chain with many more
# kill -9 points than the test suite's 10, on one guest boot and one client
# TCP connection, over TLS, redundancy restored after each failover.
#   bench/ft-soak.sh [KILLS (default 100)] [HARTS (default 1)]
# Prints each round's failover time and re-sync pause; fails on the first
# gap, duplicate or reordering in the client's counter stream.
set -eu
cd "$(dirname "$0")/.."
LOCKSTEP_FT_CHAIN="${1:-100}" LOCKSTEP_FT_CHAIN_CPUS="${2:-1}" \
    exec cargo test --release -p lockstep-cli --test ft_topology -- \
    --nocapture --exact failover_chain
