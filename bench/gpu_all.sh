#!/usr/bin/env bash
# One `device` call: teacher comparison, in-process pipeline, GLIP speed (and, asked for, CLIP re-scoring). Results under $OUT.
# spaCy and its model travel as a stripped site-packages tarball in .whl/site.tgz (see BENCHMARKS.md).
set -u
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if [ -f .whl/site.tgz ]; then mkdir -p /tmp/site && tar xzf .whl/site.tgz -C /tmp/site; fi
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, triton, sys; print(sys.version.split()[0], torch.__version__, transformers.__version__, triton.__version__)" | tee -a "$OUT/gpu.txt"
python3 -c "import spacy; from parsers import NounPhraseExtractor; print('spacy', spacy.__version__, NounPhraseExtractor().extract(['a red car'])) " 2>&1 | tail -1 | tee -a "$OUT/gpu.txt"
if [ "${TEACHER_BENCH:-1}" = 1 ]; then timeout 230 python3 bench/gpu_teacher.py --quick --budget-s 150 > "$OUT/gpu_teacher.log" 2>&1; echo "gpu_teacher rc=$?"; fi
if [ "${PIPELINE_BENCH:-1}" = 1 ]; then timeout 280 python3 bench/gpu_pipeline.py --shards 8 --samples 96 --cpu-workers 12 > "$OUT/gpu_pipeline.log" 2>&1; echo "gpu_pipeline rc=$?"; fi
if [ "${GLIP_SPEED:-1}" = 1 ]; then timeout 60 python3 bench/glip_speed.py --device cuda --batch 4 --iters 3 > "$OUT/glip_speed.log" 2>&1; echo "glip_speed rc=$?"; fi
# CLIP re-scoring (--rescorer) on the GPU: off by default, the rest fills one call's 600 s; a second call:
# TEACHER_BENCH=0 PIPELINE_BENCH=0 GLIP_SPEED=0 RESCORE_SPEED=1 bash bench/gpu_all.sh
if [ "${RESCORE_SPEED:-0}" = 1 ]; then timeout 240 python3 bench/rescore_speed.py --device cuda --batch 64 256 --crops 2048 --sizes vit-b32 > "$OUT/rescore_speed.log" 2>&1; echo "rescore_speed rc=$?"; cat "$OUT/rescore_speed.log" | grep -v Loading; fi
grep -A 14 "^variant" "$OUT/gpu_teacher.log" 2>/dev/null; tail -n 18 "$OUT/gpu_pipeline.log"; tail -n 3 "$OUT/glip_speed.log" 2>/dev/null
