"""``python -m images_to_zarr``: the command line (as the ``images_to_zarr`` console script)."""

from images_to_zarr.cli import main

if __name__ == "__main__":
    main()
