# taskgrid_proto_library(NAME PROTOS a.proto ...): generates C++ messages and
# gRPC stubs (with mock stubs for tests) for protos under proto/, and builds
# them into a static library whose headers are SYSTEM includes.
function(taskgrid_proto_library name)
  cmake_parse_arguments(ARG "" "" "PROTOS" ${ARGN})
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR})
  set(srcs)
  foreach(proto ${ARG_PROTOS})
    get_filename_component(abs ${proto} ABSOLUTE)
    file(RELATIVE_PATH rel ${CMAKE_CURRENT_SOURCE_DIR} ${abs})
    string(REGEX REPLACE "\\.proto$" "" base ${rel})
    set(outs ${out_dir}/${base}.pb.cc ${out_dir}/${base}.pb.h
             ${out_dir}/${base}.grpc.pb.cc ${out_dir}/${base}.grpc.pb.h
             ${out_dir}/${base}_mock.grpc.pb.h)
    add_custom_command(
      OUTPUT ${outs}
      COMMAND protobuf::protoc
        --proto_path=${CMAKE_CURRENT_SOURCE_DIR}
        --cpp_out=${out_dir}
        --grpc_out=generate_mock_code=true:${out_dir}
        --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>
        ${rel}
      WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}
      DEPENDS ${abs} protobuf::protoc gRPC::grpc_cpp_plugin
      COMMENT "protoc ${rel}")
    list(APPEND srcs ${out_dir}/${base}.pb.cc ${out_dir}/${base}.grpc.pb.cc)
  endforeach()
  add_library(${name} STATIC ${srcs})
  target_link_libraries(${name} PUBLIC protobuf::libprotobuf gRPC::grpc++)
  target_include_directories(${name} SYSTEM PUBLIC ${out_dir})
endfunction()
