"""The grayscale pipeline, with values computed by hand from PS3.3 C.11, and file reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from node.dicom.pixels import presentation_pixels, read_image_file
from node.errors import InvalidInput


def mg(values: list[list[int]], bits: int = 12, photometric: str = "MONOCHROME2") -> Dataset:
    """A minimal MG dataset around a small uint16 image."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.ImageLaterality = "L"
    ds.set_pixel_data(np.array(values, dtype=np.uint16), photometric, bits)
    return ds


ROW = [[0, 50, 100, 125, 149, 150, 4095]]


def test_linear_window_matches_c_11_2_1_2_1() -> None:
    ds = mg(ROW)
    ds.WindowCenter, ds.WindowWidth = 100, 101  # edges at 49.5 and 149.5
    out = presentation_pixels(ds)
    assert out.dtype == np.float32
    expected = [0.0, 0.005, 0.505, 0.755, 0.995, 1.0, 1.0]
    np.testing.assert_allclose(out[0], expected, atol=1e-6)


def test_first_window_is_used_when_several() -> None:
    ds = mg(ROW)
    ds.WindowCenter, ds.WindowWidth = [100, 2000], [101, 4000]
    ds.VOILUTFunction = "LINEAR"
    assert presentation_pixels(ds)[0, 2] == pytest.approx(0.505)


def test_linear_exact_and_sigmoid() -> None:
    ds = mg(ROW)
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 100, 100, "LINEAR_EXACT"
    np.testing.assert_allclose(presentation_pixels(ds)[0, :4], [0.0, 0.0, 0.5, 0.75], atol=1e-6)
    ds.VOILUTFunction = "SIGMOID"
    out = presentation_pixels(ds)[0]
    assert out[2] == pytest.approx(0.5)
    assert out[3] == pytest.approx(1 / (1 + np.exp(-1.0)), rel=1e-6)


def test_unknown_voi_lut_function_is_refused() -> None:
    ds = mg(ROW)
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 100, 100, "LOG"
    with pytest.raises(InvalidInput, match="VOI LUT Function"):
        presentation_pixels(ds)


def test_rescale_then_window_on_modality_values() -> None:
    ds = mg([[0, 100, 255]], bits=8)
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100  # modality values -100, 100, 410
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 100, 200, "LINEAR_EXACT"
    np.testing.assert_allclose(presentation_pixels(ds)[0], [0.0, 0.5, 1.0], atol=1e-6)


def test_no_voi_normalises_by_the_modality_range() -> None:
    ds = mg([[0, 100, 255]], bits=8)
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100  # range -100 .. 410
    np.testing.assert_allclose(presentation_pixels(ds)[0], [0.0, 200 / 510, 1.0], atol=1e-6)


def test_voi_lut_sequence() -> None:
    ds = mg([[0, 1, 2, 3, 9]], bits=8)
    item = Dataset()
    item.LUTDescriptor = [4, 0, 8]
    item.LUTData = [0, 51, 102, 255]
    ds.VOILUTSequence = Sequence([item])
    np.testing.assert_allclose(presentation_pixels(ds)[0], [0, 0.2, 0.4, 1, 1], atol=1e-6)


def test_monochrome1_is_inverted() -> None:
    ds = mg([[0, 4095]], photometric="MONOCHROME1")
    np.testing.assert_allclose(presentation_pixels(ds)[0], [1.0, 0.0])


def test_inverse_presentation_lut_shape_on_monochrome2_is_inverted() -> None:
    ds = mg([[0, 4095]])
    ds.PresentationLUTShape = "INVERSE"
    np.testing.assert_allclose(presentation_pixels(ds)[0], [1.0, 0.0])


def test_monochrome1_with_inverse_is_inverted_once() -> None:
    ds = mg([[0, 4095]], photometric="MONOCHROME1")
    ds.PresentationLUTShape = "INVERSE"  # PS3.3 C.8.11.3: both say the same thing
    np.testing.assert_allclose(presentation_pixels(ds)[0], [1.0, 0.0])


def test_no_pixel_data() -> None:
    ds = mg(ROW)
    del ds.PixelData
    with pytest.raises(InvalidInput, match="no Pixel Data"):
        presentation_pixels(ds)


def test_colour_is_refused() -> None:
    ds = mg(ROW)
    ds.set_pixel_data(np.zeros((4, 4, 3), np.uint8), "RGB", 8)
    with pytest.raises(InvalidInput, match="colour"):
        presentation_pixels(ds)


def test_multiframe_is_refused() -> None:
    ds = mg(ROW)
    ds.set_pixel_data(np.zeros((3, 4, 4), np.uint16), "MONOCHROME2", 12)
    with pytest.raises(InvalidInput, match="multi-frame"):
        presentation_pixels(ds)


def test_undecodable_pixels() -> None:
    ds = mg(ROW)
    ds.PixelData = b"\x00\x01\x02"  # too short for 1x7 16-bit pixels
    with pytest.raises(InvalidInput, match="cannot be decoded"):
        presentation_pixels(ds)
    ds = mg(ROW)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"not a jpeg 2000 codestream"])
    with pytest.raises(InvalidInput, match="cannot be decoded"):
        presentation_pixels(ds)


def test_read_dicom_by_content_whatever_the_extension(tmp_path: Path) -> None:
    ds = mg([[0, 4095]])
    path = tmp_path / "looks-like.png"
    ds.save_as(path, enforce_file_format=True)
    pixels, read = read_image_file(path)
    assert read is not None and read.ImageLaterality == "L"
    np.testing.assert_allclose(pixels[0], [0.0, 1.0])


def test_read_png_8_and_16_bit(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 51, 255]], np.uint8)).save(tmp_path / "a.png")
    pixels, ds = read_image_file(tmp_path / "a.png")
    assert ds is None
    np.testing.assert_allclose(pixels[0], [0, 0.2, 1], atol=1e-6)
    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(tmp_path / "b.png")
    np.testing.assert_allclose(read_image_file(tmp_path / "b.png")[0][0], [0, 1], atol=1e-6)


def test_colour_png_is_refused(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "c.png")
    with pytest.raises(InvalidInput, match="grayscale"):
        read_image_file(tmp_path / "c.png")


def test_read_pgm_8_and_16_bit(tmp_path: Path) -> None:
    (tmp_path / "a.pgm").write_bytes(b"P5\n# comment\n3 1\n255\n" + bytes([0, 51, 255]))
    np.testing.assert_allclose(read_image_file(tmp_path / "a.pgm")[0][0], [0, 0.2, 1], atol=1e-6)
    raster = np.array([[0, 819, 4095]], ">u2").tobytes()
    (tmp_path / "b.pgm").write_bytes(b"P5 3 1 4095\n" + raster)
    np.testing.assert_allclose(read_image_file(tmp_path / "b.pgm")[0][0], [0, 0.2, 1], atol=1e-6)


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "x.dcm").write_bytes(b"hello, not an image" * 20)
    with pytest.raises(InvalidInput, match="not a DICOM, PNG or binary PGM"):
        read_image_file(tmp_path / "x.dcm")
    (tmp_path / "t.pgm").write_bytes(b"P5 30 10 255\n" + bytes(10))
    with pytest.raises(InvalidInput, match="truncated PGM"):
        read_image_file(tmp_path / "t.pgm")
    with pytest.raises(InvalidInput, match="cannot open"):
        read_image_file(tmp_path / "missing.dcm")


def test_empty_window_falls_back_to_the_full_range() -> None:
    ds = mg([[0, 4095]])
    ds.WindowCenter, ds.WindowWidth = None, None  # present but empty (seen in the wild)
    np.testing.assert_allclose(presentation_pixels(ds)[0], [0.0, 1.0])
