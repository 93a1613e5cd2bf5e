#!/bin/sh
# Generate the 4-member committee that docker-compose.yml runs: keys, genesis, configs.
# Members listen on 0.0.0.0 in their own containers and reach each other by service
# name (node0..node3), so the genesis host of member i is "node$i".
set -eu
cd "$(dirname "$0")"
seqnet committee init --nodes 4 --out committee --base-port 7000 --host 0.0.0.0
awk '/^host = /{sub(/".*"/, "\"node" i++ "\"")} {print}' committee/genesis.toml > committee/genesis.tmp
mv committee/genesis.tmp committee/genesis.toml
echo "committee written to $(pwd)/committee; now: docker compose up -d"
