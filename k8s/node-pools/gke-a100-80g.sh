#!/usr/bin/env bash
# Example (GKE): the node pools of the a100-80g profile. Adjust CLUSTER / REGION / zones to yours.
set -euo pipefail
CLUSTER="${CLUSTER:-armed}" REGION="${REGION:-us-central1}" ZONES="${ZONES:-us-central1-a}"
gcloud container node-pools create cpu --cluster "$CLUSTER" --region "$REGION" --node-locations "$ZONES" \
  --machine-type e2-standard-16 --enable-autoscaling --min-nodes 1 --max-nodes 4 \
  --node-labels armed.io/pool=cpu
gcloud container node-pools create a100-80g --cluster "$CLUSTER" --region "$REGION" --node-locations "$ZONES" \
  --machine-type a2-ultragpu-8g --accelerator type=nvidia-a100-80gb,count=8,gpu-driver-version=latest \
  --enable-autoscaling --min-nodes 1 --max-nodes 4 \
  --node-labels armed.io/pool=a100-80g --node-taints armed.io/pool=a100-80g:NoSchedule
# GKE adds the nvidia.com/gpu=present:NoSchedule taint to GPU pools itself.
