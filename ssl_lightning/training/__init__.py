"""How a stage trains: Lightning Trainers and their callbacks, resume checkpoints, processes, threads."""
