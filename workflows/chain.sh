#!/bin/bash
# Train, sample, then estimate free energies: three Slurm jobs, each starting only after the
# one before it succeeded (--dependency=afterok; a training job that requeued itself counts
# when its last part succeeds). If one fails, the jobs after it are cancelled.
#
#   workflows/chain.sh NAME SYSTEM [boltzflow train options]
#   workflows/chain.sh ala-fab alanine-dipeptide --objective fab --steps 20000
#
# NAME names the jobs and the run directory runs/NAME below the current directory. Training
# runs workflows/train.sbatch; then runs/NAME/samples.h5 gets $SAMPLES draws (default 100000)
# and runs/NAME/free-energy.json the free energies. Adapt the resources below.
set -euo pipefail
if [ $# -lt 2 ] || ! [[ $1 =~ ^[A-Za-z0-9._-]+$ ]]; then
    echo "usage: $0 NAME SYSTEM [boltzflow train options]   (NAME: letters, digits, . _ -)" >&2
    exit 2
fi
name=$1
shift
run=runs/$name
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$run"

train=$(sbatch --parsable --job-name="$name" "$here/train.sbatch" "$@")
train=${train%%;*}
sample=$(sbatch --parsable --job-name="$name-sample" --dependency="afterok:$train" --kill-on-invalid-dep=yes \
    --output="$run/slurm-sample.out" --time=01:00:00 --cpus-per-task=4 --mem=8G \
    --wrap="boltzflow sample $run -n ${SAMPLES:-100000} --out $run/samples.h5")
sample=${sample%%;*}
analysis=$(sbatch --parsable --job-name="$name-free-energy" --dependency="afterok:$sample" --kill-on-invalid-dep=yes \
    --output="$run/slurm-free-energy.out" --time=00:30:00 --cpus-per-task=2 --mem=4G \
    --wrap="boltzflow free-energy $run --json $run/free-energy.json")
analysis=${analysis%%;*}
echo "$run: train $train -> sample $sample -> free-energy $analysis"
