/* augur serve's pure parts: request validation, response JSON, stop strings held back
 * from a stream, UTF-8-safe cuts, chat templates, the Prometheus text. The HTTP server
 * itself is exercised end to end by tests/mpi/serve_*.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "runtime/serve/chat_template.h"
#include "runtime/serve/metrics.h"
#include "runtime/serve/openai_api.h"
#include "runtime/serve/serve_request.h"

static bool parse(serve_kind kind, const char *body, serve_params *p, api_error *e)
{
    *e = (api_error){0};
    return openai_parse_request(kind, body, strlen(body), 100, p, e);
}

static void test_parse_valid(void **state)
{
    (void)state;
    serve_params p;
    api_error e;
    assert_true(parse(SERVE_COMPLETION,
                      "{\"model\":\"m\",\"prompt\":\"hi\",\"max_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,"
                      "\"top_k\":-1,\"seed\":3,\"stop\":[\"a\",\"bc\"],\"stream\":true,"
                      "\"stream_options\":{\"include_usage\":true},\"n\":1,\"speculation\":false,\"user\":\"u\","
                      "\"logprobs\":null,\"presence_penalty\":0}",
                      &p, &e));
    assert_string_equal(p.prompt, "hi");
    assert_int_equal(p.max_tokens, 7);
    assert_true(p.sampling.temperature == 0.5f && p.sampling.top_k == 0);
    assert_true(p.have_seed && p.seed == 3 && p.stream && p.include_usage && !p.speculation);
    assert_int_equal(p.n_stop, 2);
    assert_string_equal(p.stop[1], "bc");
    serve_params_free(&p);
    /* defaults: OpenAI's temperature 1, speculation on */
    assert_true(parse(SERVE_COMPLETION, "{\"prompt\":[1,2,99]}", &p, &e));
    assert_int_equal(p.n_prompt_ids, 3);
    assert_true(p.sampling.temperature == 1.0f && p.speculation && p.max_tokens == 0);
    serve_params_free(&p);
    assert_true(parse(SERVE_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                                  "{\"type\":\"text\",\"text\":\"b\"}]}],\"max_completion_tokens\":3}",
                      &p, &e));
    assert_string_equal(p.messages[0].content, "ab");
    assert_int_equal(p.max_tokens, 3);
    serve_params_free(&p);
}

static void test_parse_invalid(void **state)
{
    (void)state;
    static const struct {
        serve_kind kind;
        const char *body, *code, *param;
    } cases[] = {
        {SERVE_COMPLETION, "{", "invalid_json", ""},
        {SERVE_COMPLETION, "\"x\"", "invalid_json", ""},
        {SERVE_COMPLETION, "{\"prompt\":\"a\",\"prompt\":\"b\"}", "invalid_json", ""},
        {SERVE_COMPLETION, "{\"prompt\":\"a\",\"bogus\":1}", "unknown_field", "bogus"},
        {SERVE_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":1.0}", "invalid_type", "max_tokens"},
        {SERVE_COMPLETION, "{\"prompt\":\"a\",\"temperature\":-0.1}", "invalid_value", "temperature"},
        {SERVE_COMPLETION, "{\"prompt\":\"a\",\"top_p\":0}", "invalid_value", "top_p"},
        {SERVE_COMPLETION, "{\"prompt\":\"a\",\"n\":3}", "unsupported_value", "n"},
        {SERVE_COMPLETION, "{\"prompt\":\"a\",\"n\":0}", "invalid_value", "n"},
        {SERVE_COMPLETION, "{\"prompt\":[1,100]}", "invalid_value", "prompt"},
        {SERVE_COMPLETION, "{\"prompt\":\"a\\u0000b\"}", "invalid_json", ""}, /* jansson refuses NUL */
        {SERVE_COMPLETION, "{\"prompt\":\"a\",\"stop\":[\"\"]}", "invalid_value", "stop"},
        {SERVE_COMPLETION, "{\"prompt\":\"a\",\"echo\":true}", "unsupported_value", "echo"},
        {SERVE_COMPLETION, "{\"messages\":[]}", "unknown_field", "messages"},
        {SERVE_COMPLETION, "{}", "missing_field", "prompt"},
        {SERVE_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":7}]}", "invalid_type", "messages"},
        {SERVE_CHAT, "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", "invalid_value", "messages"},
        {SERVE_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":{}}", "invalid_value",
         "stream_options"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        serve_params p;
        api_error e;
        bool ok = parse(cases[i].kind, cases[i].body, &p, &e);
        serve_params_free(&p);
        if (ok || e.status != 400 || strcmp(e.code, cases[i].code) || strcmp(e.param, cases[i].param))
            fail_msg("%s: ok=%d status %d code %s param '%s' (%s); expected 400 %s '%s'", cases[i].body, ok, e.status,
                     e.code ? e.code : "(null)", e.param, e.message, cases[i].code, cases[i].param);
    }
}

static void test_error_and_response_json(void **state)
{
    (void)state;
    api_error e;
    api_error_set(&e, 400, "invalid_request_error", "invalid_value", "top_p", "bad %d", 1);
    char *s = openai_error_json(&e);
    assert_string_equal(s, "{\"error\":{\"message\":\"bad 1\",\"type\":\"invalid_request_error\",\"param\":\"top_p\","
                           "\"code\":\"invalid_value\"}}");
    free(s);
    serve_usage u = {.prompt_tokens = 3, .completion_tokens = 4, .rounds = 2, .proposed = 4, .accepted = 2,
                     .speculation = true};
    s = openai_response_json(SERVE_CHAT, "chatcmpl-1", 5, "m", "h\xc3\xa9", 3, FINISH_STOP, &u);
    json_t *j = json_loads(s, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ch, "message"), "content")), "h\xc3\xa9");
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "stop");
    json_t *usage = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(usage, "total_tokens")), 7);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(usage, "augur"), "accepted_tokens")), 2);
    json_decref(j);
    free(s);
    /* a chunk cut inside a UTF-8 character cannot be encoded: streams cut before it */
    assert_null(openai_chunk_json(SERVE_COMPLETION, "c", 1, "m", "h\xc3", 2, false, NULL));
}

static void test_utf8_prefix(void **state)
{
    (void)state;
    assert_int_equal(utf8_safe_prefix("abc", 3), 3);
    assert_int_equal(utf8_safe_prefix("a\xc3\xa9", 3), 3);
    assert_int_equal(utf8_safe_prefix("a\xc3", 2), 1);
    assert_int_equal(utf8_safe_prefix("a\xe2\x82", 3), 1);
    assert_int_equal(utf8_safe_prefix("a\xe2\x82\xac", 4), 4);
    assert_int_equal(utf8_safe_prefix("\xf0\x9f\x98", 3), 0);
}

/* Text arrives in pieces; `visible` never exposes a prefix of a stop string, and the
 * text ends right before the first match, also across pieces. */
static void test_stop_strings(void **state)
{
    (void)state;
    serve_request *r = serve_request_new();
    r->params.stop[0] = strdup("END");
    r->params.stop[1] = strdup("xy");
    r->params.n_stop = 2;
    const char *pieces[] = {"hello E", "N", "ot E", "ND and more"};
    size_t visible_after[] = {5, 6, 10, 11};
    for (int i = 0; i < 4; i++) {
        sreq_append_locked(r, pieces[i], strlen(pieces[i]));
        bool stopped = sreq_scan_stop_locked(r, false);
        assert_int_equal(stopped, i == 3);
        assert_int_equal(r->visible, visible_after[i]);
    }
    assert_string_equal(r->text, "hello ENot ");
    sreq_append_locked(r, "dropped", 7); /* after a match nothing is added */
    assert_int_equal(r->len, 11);
    serve_request_release(r);

    r = serve_request_new(); /* no stop strings: everything is visible at once */
    sreq_append_locked(r, "abc", 3);
    sreq_scan_stop_locked(r, false);
    assert_int_equal(r->visible, 3);
    serve_request_release(r);
}

static void test_chat_templates(void **state)
{
    (void)state;
    chat_message m[2] = {{"system", "be brief"}, {"user", " hi "}};
    bool add = false;
    char *s = chat_template_render(CHAT_TEMPLATE_PLAIN, m, 2, &add);
    assert_string_equal(s, "system: be brief\nuser:  hi \nassistant:");
    assert_true(add);
    free(s);
    s = chat_template_render(CHAT_TEMPLATE_LLAMA3, m, 2, &add);
    assert_string_equal(s, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nbe brief<|eot_id|>"
                           "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
                           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    assert_false(add);
    free(s);
    s = chat_template_render(CHAT_TEMPLATE_CHATML, m, 2, &add);
    assert_string_equal(s, "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\n hi <|im_end|>\n"
                           "<|im_start|>assistant\n");
    free(s);
    /* detection from tokenizer_config.json */
    char dir[] = "/tmp/augur-chat-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    chat_template_kind kind;
    const char *desc;
    augur_error err = {0};
    assert_int_equal(chat_template_detect(dir, &kind, &desc, &err), AUGUR_OK);
    assert_int_equal(kind, CHAT_TEMPLATE_PLAIN); /* no file */
    FILE *f = fopen(path, "w");
    fputs("{\"chat_template\": \"{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}\"}", f);
    fclose(f);
    assert_int_equal(chat_template_detect(dir, &kind, &desc, &err), AUGUR_OK);
    assert_int_equal(kind, CHAT_TEMPLATE_CHATML);
    f = fopen(path, "w");
    fputs("{\"chat_template\": \"<|start_header_id|>\"", f); /* truncated */
    fclose(f);
    assert_int_equal(chat_template_detect(dir, &kind, &desc, &err), AUGUR_E_FORMAT);
    assert_non_null(strstr(err.message, "tokenizer_config.json"));
    remove(path);
    rmdir(dir);
}

static void test_metrics_text(void **state)
{
    (void)state;
    serve_metrics m;
    metrics_init(&m, 1024, 64);
    metrics_outcome(&m, OUTCOME_REJECTED);
    metrics_observe(&m, &m.ttft, 0.02, 1);
    metrics_observe(&m, &m.ttft, 100.0, 2);
    metrics_tokens(&m, 5, 10, 4, 12, 6, 10);
    char *s = metrics_render(&m);
    assert_non_null(strstr(s, "augur_requests_total{outcome=\"rejected\"} 1\n"));
    assert_non_null(strstr(s, "augur_time_to_first_token_seconds_bucket{le=\"0.025\"} 1\n"));
    assert_non_null(strstr(s, "augur_time_to_first_token_seconds_bucket{le=\"60\"} 1\n"));
    assert_non_null(strstr(s, "augur_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(s, "augur_spec_acceptance_rate 0.5\n"));
    assert_non_null(strstr(s, "augur_spec_tokens_per_round 2.5\n"));
    assert_non_null(strstr(s, "augur_kv_positions_capacity 1024\n"));
    assert_non_null(strstr(s, "augur_kv_blocks_capacity 64\n"));
    free(s);
    metrics_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),     cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_error_and_response_json), cmocka_unit_test(test_utf8_prefix),
        cmocka_unit_test(test_stop_strings),    cmocka_unit_test(test_chat_templates),
        cmocka_unit_test(test_metrics_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
