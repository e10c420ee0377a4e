/* The JSON side of each POST route: validate the body (400 naming the
 * field, 413/422 naming the limit), turn it into scoring items, run them
 * through the batcher, and build the response. */
#ifndef OPRM_SERVE_ROUTES_H
#define OPRM_SERVE_ROUTES_H

#include <jansson.h>

#include "serve/batcher.h"

typedef struct {
    Batcher *batcher;
    int max_request_items;
    const char *model_name;
} RouteEnv;

typedef struct {
    int code; /* HTTP status when the route returns NULL */
    char msg[1400];
} RouteError;

json_t *route_get_reward(const RouteEnv *env, json_t *body, RouteError *e);
json_t *route_score_evaluation(const RouteEnv *env, json_t *body, RouteError *e);
json_t *route_score(const RouteEnv *env, json_t *body, RouteError *e);
json_t *route_compare(const RouteEnv *env, json_t *body, RouteError *e);

#endif
