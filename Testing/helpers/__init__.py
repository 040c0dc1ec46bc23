"""What tests share: images with scanner geometries, DICOM series, the CLI runner, small pools and stores,
toy datasets, broken files, the fine-tune test setup. Fixtures stay in Testing/conftest.py."""
