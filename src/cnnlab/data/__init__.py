"""The data layer: IDX files, where they come from, datasets in memory, fast batches."""
