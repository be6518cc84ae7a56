#!/usr/bin/env bash
# ECSD demo: train, segment and evaluate on the generated synthetic demo data (bundles/ecsd/demo_data).
# Short settings so it finishes in minutes on a CPU, in bundles/ecsd/configs/demo.json: an overlay that train, inference
# and evaluate share, so every ECSD command given it reads the demo model. The paper's settings are the config defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
configs=bundles/ecsd/configs
python -m monai.bundle run training --config_file "['$configs/train.json','$configs/demo.json']"
python -m monai.bundle run --config_file "['$configs/inference.json','$configs/demo.json']"
python -m monai.bundle run --config_file "['$configs/inference.json','$configs/evaluate.json','$configs/demo.json']"
echo
echo "Masks:   bundles/ecsd/outputs/inference/masks/"
echo "Metrics: bundles/ecsd/outputs/evaluate/metrics.json and metrics.csv"
echo "Figure:  bundles/ecsd/outputs/evaluate/figure.png"
echo "Segment another image with the demo model:"
echo "  python -m monai.bundle run --config_file \"['$configs/inference.json','$configs/demo.json']\" --input IMAGE"
