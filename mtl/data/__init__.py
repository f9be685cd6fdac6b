"""Visual Decathlon data: devkit reader, HDF5 preparation, loaders, mini-decathlon generator."""
