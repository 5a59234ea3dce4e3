// The dashboard and the OpenAPI document, compiled into the gateway from
// services/gateway/web/ (see cmake/TaskgridEmbed.cmake).
#ifndef TASKGRID_SERVICES_GATEWAY_WEB_ASSETS_H_
#define TASKGRID_SERVICES_GATEWAY_WEB_ASSETS_H_

#include <map>
#include <string>
#include <string_view>
#include <utility>

namespace taskgrid::gateway::web {

// Path ("/index.html") -> (content type, bytes).
const std::map<std::string, std::pair<std::string_view, std::string_view>>& Assets();

}  // namespace taskgrid::gateway::web

#endif  // TASKGRID_SERVICES_GATEWAY_WEB_ASSETS_H_
