"""Built-in executors that need no engine: `local` (sequential, in process) and `local-gpus` (one worker
process per GPU). The cluster executors are their own plugin packages (`ctrbench_ray`, `ctrbench_slurm`)."""
