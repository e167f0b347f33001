"""The `slurm` executor: each run is a SLURM job (a job array per suite), submitted with submitit."""
