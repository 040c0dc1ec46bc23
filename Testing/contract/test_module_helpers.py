"""The module's Slicer-free helpers: ROI boxes, folders, the home folder, class tables, result texts, node tags."""

import json
import os
from pathlib import Path

import pytest

from VQSegCore.classes import LUNG_TUMOUR
from VQSegCore.models.store import VersionInfo
from VQSegCore.paths import DEFAULT_HOME
from VQSegCore.pool.layout import pool_folder
from VQSegLib import drafts, home, locations, model_card, result_text, roi, segmentation_tags

# ---- ROI ------------------------------------------------------------------------------------


class StandInRoi:
    """What roi.roiBox reads from a vtkMRMLMarkupsROINode: world bounds and the object-to-world matrix."""

    def __init__(self, bounds, rows):
        self.bounds, self.rows = bounds, rows

    def GetRASBounds(self, bounds):
        bounds[:] = self.bounds

    def GetObjectToWorldMatrix(self):
        rows = self.rows

        class Matrix:
            def GetElement(self, row, column):
                return rows[row][column]

        return Matrix()


def test_roi_box_from_bounds():
    box = roi.roiBox(StandInRoi([-10, 30, -45, 5, 0, 60], [[1, 0, 0], [0, 1, 0], [0, 0, 1]]))
    assert box == roi.RoiBox([-10.0, -45.0, 0.0, 30.0, 5.0, 60.0], False)
    flipped = roi.roiBox(StandInRoi([0, 1, 0, 1, 0, 1], [[0, -1, 0], [1, 0, 0], [0, 0, 2]]))  # axis swap, flip, scale
    assert not flipped.rotated
    turned = roi.roiBox(StandInRoi([0, 1, 0, 1, 0, 1], [[0.866, -0.5, 0], [0.5, 0.866, 0], [0, 0, 1]]))
    assert turned.rotated
    with pytest.raises(ValueError, match="no volume"):
        roi.roiBox(StandInRoi([1, -1, 1, -1, 1, -1], [[1, 0, 0], [0, 1, 0], [0, 0, 1]]))  # VTK's "unset" bounds


# ---- folders --------------------------------------------------------------------------------


def makeSupport(folder: Path):
    (folder / "VQSegCore").mkdir(parents=True)
    (folder / "VQSegCore" / "__init__.py").write_text("")
    (folder / "Resources" / "UI").mkdir(parents=True)
    (folder / "Resources" / "UI" / "VQSeg.ui").write_text("<ui/>")


def test_support_folders_beside_the_module_then_one_up(tmp_path):
    built = tmp_path / "built" / "qt-scripted-modules"
    makeSupport(built)
    assert locations.findSupportFolders(str(built)) == locations.SupportFolders(str(built / "Resources"), str(built))
    checkout = tmp_path / "checkout"
    makeSupport(checkout)
    (checkout / "VQSegExtension").mkdir()
    assert locations.findSupportFolders(str(checkout / "VQSegExtension")) == locations.SupportFolders(
        str(checkout / "Resources"), str(checkout))
    (tmp_path / "empty" / "VQSegExtension").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="Resources/ and VQSegCore/"):
        locations.findSupportFolders(str(tmp_path / "empty" / "VQSegExtension"))


def test_this_checkout_resolves():
    extension = Path(__file__).resolve().parents[2] / "VQSegExtension"
    folders = locations.findSupportFolders(str(extension))
    assert Path(folders.coreSearchPath) == extension.parent
    assert (Path(folders.resources) / "Icons" / "VQSeg.png").is_file()


# ---- home folder and environment --------------------------------------------------------------


class StandInSettings(dict):
    def contains(self, key):
        return key in self

    def value(self, key):
        return self.get(key)

    def setValue(self, key, value):
        self[key] = value


def test_home_folder_setting_and_child_environment(tmp_path):
    settings = StandInSettings()
    assert home.savedHomeFolder(settings) == ""
    home.saveHomeFolder(settings, f" {tmp_path} ")
    assert home.savedHomeFolder(settings) == str(tmp_path) and settings[home.HOME_SETTINGS_KEY] == str(tmp_path)
    assert home.childEnvironment(str(tmp_path), "cpu") == {"VQSEG_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": "-1"}
    assert home.childEnvironment("", "auto") == {}
    assert home.childEnvironment("", "cuda") == {}
    with pytest.raises(ValueError):
        home.childEnvironment("", "gpu")
    assert home.effectiveHomeFolder("", {}) == os.path.expanduser(home.DEFAULT_HOME)
    assert home.effectiveHomeFolder("", {"VQSEG_HOME": "/srv/vqseg"}) == "/srv/vqseg"


def test_home_mirror_agrees_with_the_core(tmp_path, monkeypatch):
    monkeypatch.setenv("VQSEG_HOME", str(tmp_path))
    assert Path(home.DEFAULT_HOME) == DEFAULT_HOME
    for value in ("default", "pilot-2", "./local", "~/pools/x", str(tmp_path / "abs")):
        assert Path(home.poolFolder(str(tmp_path), value)) == pool_folder(value), value
    with pytest.raises(ValueError):
        home.poolFolder(str(tmp_path), "bad name")
    assert not home.isPool(str(tmp_path))


# ---- class tables and model versions ------------------------------------------------------------


def test_class_table_from_card_pool_and_attribute(tmp_path):
    card = {"config": {"classes": LUNG_TUMOUR.to_list()}}
    modelFolder = tmp_path / "models" / "lung-lesion" / "v0003"
    modelFolder.mkdir(parents=True)
    (modelFolder / "card.json").write_text(json.dumps(card))
    table = model_card.modelClassTable(str(modelFolder))
    assert table == LUNG_TUMOUR.to_list()
    assert model_card.classTableFromJson(model_card.classTableJson(table)) == table
    (tmp_path / "pool.json").write_text(json.dumps({"format_version": 1, "classes": table}))
    assert model_card.poolClassTable(str(tmp_path)) == table
    assert model_card.modelVersionLabel(str(modelFolder)) == "lung-lesion@v0003"
    assert model_card.modelVersionLabel("/ext/Resources/Models/lung-lesion") == "lung-lesion@shipped"
    with pytest.raises(ValueError, match="no class table"):
        model_card.classTableFromCard({"config": {}})
    with pytest.raises(ValueError, match="cannot read"):
        model_card.modelClassTable(str(tmp_path / "nowhere"))


def test_class_table_file_is_accepted_by_the_pool(tmp_path):
    """The classes.json the module writes for a new pool reads back as the same table in the core."""
    from VQSegCore.cli.commands.pool import _read_class_file

    path = tmp_path / "classes.json"
    path.write_text(model_card.classTableJson(LUNG_TUMOUR.to_list()))
    assert _read_class_file(path) == LUNG_TUMOUR


# ---- node tags and drafts ------------------------------------------------------------------------


class StandInNode:
    def __init__(self):
        self.attributes = {}

    def SetAttribute(self, name, value):
        self.attributes[name] = value

    def GetAttribute(self, name):
        return self.attributes.get(name)

    def RemoveAttribute(self, name):
        self.attributes.pop(name, None)


def test_segmentation_tags_round_trip():
    node = StandInNode()
    assert segmentation_tags.classesOf(node) is None and segmentation_tags.poolCaseOf(node) == ("", "")
    segmentation_tags.recordClasses(node, LUNG_TUMOUR.to_list())
    segmentation_tags.recordDraft(node, "/h/drafts/d.nii.gz", "lung-lesion@v0002")
    segmentation_tags.recordPoolCase(node, "default", "case-0001")
    assert segmentation_tags.classesOf(node) == LUNG_TUMOUR.to_list()
    assert segmentation_tags.draftOf(node) == ("/h/drafts/d.nii.gz", "lung-lesion@v0002")
    segmentation_tags.forgetDraft(node)
    assert segmentation_tags.draftOf(node) == ("", "lung-lesion@v0002")
    assert segmentation_tags.poolCaseOf(node) == ("default", "case-0001")
    segmentation_tags.forgetPoolCase(node)
    assert segmentation_tags.poolCaseOf(node) == ("", "")


def test_drafts_are_kept_and_discarded_only_in_their_folder(tmp_path):
    label = tmp_path / "run" / "label.nii.gz"
    label.parent.mkdir()
    label.write_bytes(b"label")
    kept = drafts.keepDraft(str(label), str(tmp_path / "home"))
    assert kept.endswith(".nii.gz") and Path(kept).read_bytes() == b"label"
    drafts.discardDraft(str(label), str(tmp_path / "home"))  # not a kept draft: untouched
    assert label.exists()
    drafts.discardDraft(kept, str(tmp_path / "home"))
    assert not Path(kept).exists()


# ---- result texts -----------------------------------------------------------------------------


def test_pool_rows_and_summary():
    listing = {"count": 2, "labelled": 1, "unlabelled": 1, "unreadable": ["case-0009"], "cases": [
        {"id": "case-0001", "status": "labelled", "source_name": "CT chest", "added": "2026-11-26T06:00:00+00:00",
         "updated": "2026-11-26T07:30:12+00:00", "draft_model": "lung-lesion@v0001", "edited_voxels": {"lung_tumour": 120}},
        {"id": "case-0002", "status": "unlabelled", "source_name": "", "added": "2026-11-26T08:00:00+00:00", "updated": None,
         "edited_voxels": None}]}
    assert result_text.poolRows(listing) == [
        ("case-0001", "labelled", "CT chest", "2026-11-26 07:30", "120"),
        ("case-0002", "unlabelled", "", "2026-11-26 08:00", "")]
    assert result_text.poolSummary(listing) == "2 cases: 1 corrected, 1 unlabelled. 1 damaged (run 'vqseg pool verify')."
    assert result_text.editedVoxelsText({"a": 1, "b": 2}) == "a: 1, b: 2"


def test_model_rows_and_choices_from_the_store_format():
    versions = [VersionInfo("lung-lesion", "v0001", Path("/m/v1"), "promoted", False, "2026-11-25T10:00:00+00:00", None, None,
                            {"held_out_dice": 0.8123}).to_dict(),
                VersionInfo("lung-lesion", "v0002", Path("/m/v2"), "candidate", True, "2026-11-26T10:00:00+00:00", "v0001",
                            "held-out Dice fell", {}).to_dict()]
    listing = {"models": {"lung-lesion": versions}, "store": "/m"}
    assert result_text.activeVersion(listing, "lung-lesion") == "v0002"
    assert result_text.modelRows(listing, "lung-lesion") == [
        ("v0001", "promoted", "", "2026-11-25 10:00", "0.812", ""),
        ("v0002", "candidate", "yes", "2026-11-26 10:00", "", "held-out Dice fell")]
    assert result_text.modelChoices(listing) == [("lung-lesion (active: v0002)", "lung-lesion"),
                                                 ("lung-lesion@v0001  [promoted]", "lung-lesion@v0001"),
                                                 ("lung-lesion@v0002  [candidate]", "lung-lesion@v0002")]
    assert result_text.modelChoices(None) == []


def test_segment_texts():
    result = {"classes": [{"id": "lung_tumour", "value": 1, "voxels": 900, "ml": 12.34}], "timings_s": {"total": 4.12}, "device": "cpu",
              "ood": {"warning": "this image looks unlike the model's training data"}}
    assert result_text.segmentSummary(result, {"lung_tumour": "Lung tumour"}) == "Lung tumour: 12.3 ml. Done in 4.1 s (cpu)."
    assert result_text.segmentSummary({**result, "warnings": ["17 voxels ... not a number"]}, {"lung_tumour": "Lung tumour"}).endswith("(cpu).")
    assert result_text.segmentSummary({**result, "warnings": ["made without an ROI: the model searched the lungs' bounding box; ..."]}).endswith(
        "Made without an ROI: check every finding, or place an ROI around the lesion and segment again.")
    assert result_text.oodWarning(result).startswith("this image looks unlike")
    assert result_text.oodWarning({"ood": None}) == "" and result_text.oodWarning(None) == ""


def test_training_progress_and_verdict():
    event = {"event": "progress", "stage": "train", "done": 120, "total": 0, "eta_s": None, "loss": 0.41234, "val_dice": None,
             "time_left_s": 150.0}
    assert result_text.trainingFraction(event, 600) == pytest.approx(0.75)
    assert result_text.trainingStatus(event, 0.8) == "Training: iteration 120, about 2 min left. Loss 0.412, validation Dice 0.800."
    counted = {"event": "progress", "stage": "train", "done": 1, "total": 4}
    assert result_text.trainingFraction(counted, None) == 0.25
    promoted = {"model": "lung-lesion", "version": "v0003", "parent": "v0002", "promoted": True, "held_out_dice": 0.84,
                "parent_held_out_dice": 0.82, "reason": "held-out Dice 0.840 vs parent 0.820 (margin 0.010)"}
    assert result_text.finetuneVerdict(promoted).startswith("New version v0003 passed the check against v0002 and is now active.")
    kept = dict(promoted, promoted=False, reason="no held-out labelled case")
    assert "did not pass" in result_text.finetuneVerdict(kept) and "anyway" in result_text.finetuneQuestion(kept)
