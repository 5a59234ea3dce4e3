# taskgrid_embed_files(OUTPUT file.cc NAMESPACE ns BASE dir FILES a b ...):
# compiles static files into a lookup table (path -> content type, bytes), so
# binaries serve them without an install location.
function(taskgrid_embed_files)
  cmake_parse_arguments(ARG "" "OUTPUT;NAMESPACE;BASE" "FILES" ${ARGN})
  set(deps)
  foreach(f ${ARG_FILES})
    list(APPEND deps ${ARG_BASE}/${f})
  endforeach()
  add_custom_command(
    OUTPUT ${ARG_OUTPUT}
    COMMAND ${CMAKE_COMMAND} -DOUTPUT=${ARG_OUTPUT} -DNAMESPACE=${ARG_NAMESPACE}
            -DBASE=${ARG_BASE} "-DFILES=${ARG_FILES}"
            -P ${PROJECT_SOURCE_DIR}/cmake/TaskgridEmbedScript.cmake
    DEPENDS ${deps} ${PROJECT_SOURCE_DIR}/cmake/TaskgridEmbedScript.cmake
    COMMENT "embedding ${ARG_NAMESPACE} assets"
    VERBATIM)
endfunction()
