# A stand-in for Slicer's CMake package, for configuring the extension without a Slicer build
# (Testing/contract/test_cmake_packaging.py). It keeps the parts the extension relies on:
# the variables, the existence check of slicerMacroBuildScriptedModule, and the copy of
# ctkMacroCompilePythonScript (SOURCE_DIR/<file> -> DESTINATION_DIR/<file>), done at configure
# time so the test can look at the resulting module folder.
set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/Empty.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/Empty.cmake")
set(Slicer_FOUND TRUE)
