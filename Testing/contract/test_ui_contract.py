"""VQSeg.py and Resources/UI/VQSeg.ui agree: every widget the code uses exists, every parameter binding works."""

import ast

import contract_checks as checks


def test_every_ui_name_used_in_the_module_exists(moduleSource, uiText):
    missing = checks.usedUiNames(moduleSource) - set(checks.uiWidgets(uiText))
    assert not missing, f"self.ui names with no widget in VQSeg.ui: {sorted(missing)}"


def test_a_doctored_widget_name_is_caught(moduleSource, uiText):
    doctored = moduleSource.replace("self.ui.segmentButton", "self.ui.segmentButon", 1)
    assert checks.usedUiNames(doctored) - set(checks.uiWidgets(uiText)) == {"segmentButon"}


def test_parameter_bindings_name_fields_with_a_gui_connector(moduleSource, uiText):
    bindings = checks.uiParameterBindings(uiText)
    assert {field for _, _, field in bindings} >= {"inputVolume", "roi", "device", "segmentation", "showUncertainty",
                                                    "poolName", "budgetMinutes"}
    assert checks.bindingProblems(uiText, moduleSource) == []


def test_doctored_bindings_are_caught(moduleSource, uiText):
    unknownField = uiText.replace("<string>poolName</string>", "<string>poolNames</string>", 1)
    assert any("poolNames" in p for p in checks.bindingProblems(unknownField, moduleSource))
    wrongWidget = uiText.replace('class="QCheckBox" name="showUncertaintyCheckBox"', 'class="QSpinBox" name="showUncertaintyCheckBox"', 1)
    assert any("cannot show field 'showUncertainty'" in p for p in checks.bindingProblems(wrongWidget, moduleSource))
    noChoice = moduleSource.replace('device: Annotated[str, Choice(list(home.DEVICE_CHOICES))] = "auto"', 'device: str = "auto"', 1)
    assert noChoice != moduleSource
    assert any("Choice" in p for p in checks.bindingProblems(uiText, noChoice))
    unbounded = moduleSource.replace("budgetMinutes: Annotated[int, WithinRange(1, 480)] = 10", "budgetMinutes: float = 10", 1)
    assert unbounded != moduleSource
    slider = uiText.replace('class="QSpinBox" name="budgetMinutesSpinBox"', 'class="ctkSliderWidget" name="budgetMinutesSpinBox"', 1)
    assert any("bounded" in p for p in checks.bindingProblems(slider, unbounded))


def test_node_selectors_get_the_scene(uiText):
    widgets = checks.uiWidgets(uiText)
    # qMRMLSegmentationShow3DButton has no scene: it is given its segmentation node (VQSeg.py, _updateGuiState).
    selectors = {name for name, widgetClass in widgets.items()
                 if widgetClass.startswith("qMRML") and widgetClass not in ("qMRMLWidget", "qMRMLSegmentationShow3DButton")}
    assert selectors and selectors <= checks.uiSceneConnections(uiText)
    assert widgets["VQSeg"] == "qMRMLWidget"


def test_show_3d_follows_the_segmentation(uiText, moduleSource):
    assert checks.uiWidgets(uiText)["show3DButton"] == "qMRMLSegmentationShow3DButton"
    assert "<class>qMRMLSegmentationShow3DButton</class>" in uiText and "<header>qMRMLSegmentationShow3DButton.h</header>" in uiText
    assert "self.ui.show3DButton.setSegmentationNode(segmentation)" in moduleSource


def test_open_report_and_home_folder_buttons_are_connected(uiText, moduleSource):
    widgets = checks.uiWidgets(uiText)
    assert widgets["openReportButton"] == "QPushButton" and widgets["openHomeFolderButton"] == "QPushButton"
    assert 'self.ui.openReportButton.connect("clicked(bool)", self.onOpenReport)' in moduleSource
    assert 'self.ui.openHomeFolderButton.connect("clicked(bool)", self.onOpenHomeFolder)' in moduleSource
    assert "qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(" in moduleSource


def test_export_and_import_buttons_are_connected_and_blocked_while_busy(uiText, moduleSource):
    widgets = checks.uiWidgets(uiText)
    assert widgets["exportVersionButton"] == "QPushButton" and widgets["importVersionButton"] == "QPushButton"
    assert 'self.ui.exportVersionButton.connect("clicked(bool)", self.onExportVersion)' in moduleSource
    assert 'self.ui.importVersionButton.connect("clicked(bool)", self.onImportVersion)' in moduleSource
    assert "self.ui.exportVersionButton, self.ui.importVersionButton):" in moduleSource  # in the busy loop
    assert "cli_arguments.modelsExportArguments(" in moduleSource and "cli_arguments.modelsImportArguments(" in moduleSource
    # Qt's static dialogs: (parent, caption, directory, filter) -> path string in PythonQt
    assert "qt.QFileDialog.getSaveFileName(slicer.util.mainWindow()," in moduleSource
    assert "qt.QFileDialog.getOpenFileName(slicer.util.mainWindow()," in moduleSource


def test_the_region_selector_creates_a_centred_roi(uiText, moduleSource):
    roi = uiText[uiText.index('name="roiSelector"'):]
    roi = roi[:roi.index("</widget>")]
    assert '<property name="addEnabled">\n         <bool>true</bool>' in roi
    assert 'self.ui.roiSelector.connect("nodeAddedByUser(vtkMRMLNode*)", self.onRoiCreated)' in moduleSource
    assert "roiNode.SetSize(*roi.NEW_ROI_SIZE_MM)" in moduleSource


def test_the_log_section_keeps_every_message_of_a_run(uiText, moduleSource):
    assert checks.uiWidgets(uiText)["logTextEdit"] == "QPlainTextEdit"
    log = uiText[uiText.index('name="logTextEdit"'):]
    assert '<property name="readOnly">\n         <bool>true</bool>' in log[:400]
    functions = {f.name: ast.unparse(f) for f in ast.walk(ast.parse(moduleSource)) if isinstance(f, ast.FunctionDef)}
    assert "self._appendLog(" in functions["_onRunEvent"] and "self._appendLog(text)" in functions["_showStatus"]
    assert "appendPlainText" in functions["_appendLog"]


def test_the_device_check_is_wired(uiText, moduleSource):
    widgets = checks.uiWidgets(uiText)
    assert widgets["checkDeviceButton"] == "QPushButton" and widgets["deviceAdviceLabel"] == "QLabel"
    assert 'self.ui.checkDeviceButton.connect("clicked(bool)", self.onCheckDevice)' in moduleSource
    assert "result_text.deviceAdvice(info)" in moduleSource
