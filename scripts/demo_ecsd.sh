#!/usr/bin/env bash
# ECSD demo: train, segment and evaluate on the generated synthetic demo data (bundles/ecsd/demo_data).
# Short settings so it finishes in minutes on a CPU; the paper's settings are the config defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=bundles/ecsd
demo=(--bundle_root "$bundle" --patch_size "[96,96]" --channels "[32, 64, 128, 256]" --filter_size "[96, 96]" --num_inference_steps 10)
python -m monai.bundle run training --config_file "$bundle/configs/train.json" "${demo[@]}" \
    --epochs 60 --batch_size 2 --learning_rate 0.0004 --val_interval 30 --use_checkpointing False
python -m monai.bundle run --config_file "$bundle/configs/inference.json" "${demo[@]}"
python -m monai.bundle run --config_file "['$bundle/configs/inference.json','$bundle/configs/evaluate.json']" "${demo[@]}"
echo
echo "Masks:   $bundle/outputs/inference/masks/"
echo "Metrics: $bundle/outputs/evaluate/metrics.json and metrics.csv"
echo "Figure:  $bundle/outputs/evaluate/figure.png"
