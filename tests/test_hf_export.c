/* The tokenizer_config.json of an oprm checkpoint is what transformers needs
 * to see the model as oprm trained it (src/tok/hf_export.c): tokenizer_class
 * PreTrainedTokenizerFast (transformers 5 rebuilds a LlamaTokenizer from the
 * config and then drops story-llama's unknown characters: 110 -> 105 tokens on
 * the scoring prompt) unless that would change the BOS/EOS oprm adds, and
 * oprm's plain template where there is none (apply_chat_template refused the
 * checkpoint before). oprm itself tokenizes the rewritten files exactly as the
 * originals. Also through `oprm train` (OPRM_BIN) on story-llama. */
#include <jansson.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/fileio.h"
#include "test.h"
#include "tok/chat.h"
#include "tok/hf_export.h"
#include "tok/tokenizer.h"

static char tmpdir[64];

static void copy_to(const char *src_dir, const char *name, const char *dst_dir) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cp '%s/%s' '%s/'", src_dir, name, dst_dir);
    CHECK(system(cmd) == 0);
}

static json_t *load_cfg(const char *dir) {
    char *p = path_join(dir, "tokenizer_config.json");
    json_error_t je;
    json_t *j = json_load_file(p, JSON_DECODE_INT_AS_REAL, &je);
    if (!j) fprintf(stderr, "%s: %s\n", p, je.text);
    free(p);
    return j;
}

static const char *str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

/* oprm's ids of a few texts, with and without the special tokens, joined. */
static void encode_all(const char *dir, IdVec *out) {
    OprmError err = {{0}};
    Tokenizer *t = tok_load(dir, &err);
    CHECK(t != NULL);
    if (!t) return;
    const char *texts[] = {"System: You are a reward model. Rate the quality of the assistant's response (1 to 9).\n\n"
                           "User: Conversation:\nUser: Hi\n\nResponse to rate:\nHello!\n\nAssistant: Score: ",
                           " leading space", "a\tb\tc +7 [[5]]"};
    for (int s = 0; s < 2; s++)
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
            IdVec ids = {0};
            CHECK(tok_encode(t, texts[i], strlen(texts[i]), s, &ids, &err) == 0);
            for (size_t k = 0; k < ids.n; k++) idvec_push(out, ids.v[k]);
            idvec_push(out, -1);
            idvec_free(&ids);
        }
    tok_free(t);
}

static void test_story_llama(void) {
    char src[512], dir[128];
    snprintf(src, sizeof src, "%s/models/story-llama", shared_data_dir());
    snprintf(dir, sizeof dir, "%s/story", tmpdir);
    OprmError err0 = {{0}};
    CHECK(make_dirs(dir, &err0) == 0);
    copy_to(src, "tokenizer.json", dir);
    copy_to(src, "tokenizer_config.json", dir);
    IdVec before = {0}, after = {0};
    encode_all(dir, &before);
    OprmError err = {{0}};
    CHECK(tok_export_for_hf(dir, "plain", &err) == 0);
    json_t *cfg = load_cfg(dir);
    CHECK(cfg != NULL);
    CHECK(str(cfg, "tokenizer_class") && !strcmp(str(cfg, "tokenizer_class"), "PreTrainedTokenizerFast"));
    CHECK(str(cfg, "oprm_original_tokenizer_class") && !strcmp(str(cfg, "oprm_original_tokenizer_class"), "LlamaTokenizer"));
    CHECK(str(cfg, "chat_template") && !strcmp(str(cfg, "chat_template"), CHAT_PLAIN_TEMPLATE));
    CHECK(str(cfg, "bos_token") && !strcmp(str(cfg, "bos_token"), "<|start_story|>"));
    CHECK(json_real_value(json_object_get(cfg, "model_max_length")) > 1e29);
    ChatFormat f;
    ChatTemplateMatch m;
    CHECK(chat_template_match(str(cfg, "chat_template"), &f, &m, NULL, &err) == 0 && f == CHAT_PLAIN &&
          m == CHAT_TEMPLATE_EXACT);
    json_decref(cfg);
    encode_all(dir, &after);
    CHECK(before.n > 20 && before.n == after.n && !memcmp(before.v, after.v, before.n * sizeof *before.v));
    /* a second export changes nothing */
    char *p = path_join(dir, "tokenizer_config.json");
    size_t n1, n2;
    char *a = read_file(p, &n1, &err);
    CHECK(tok_export_for_hf(dir, "plain", &err) == 0);
    char *b = read_file(p, &n2, &err);
    CHECK(a && b && n1 == n2 && !memcmp(a, b, n1));
    free(a);
    free(b);
    free(p);
    idvec_free(&before);
    idvec_free(&after);
}

/* add_bos_token false with a LlamaTokenizer: oprm adds no BOS, the file's
 * post-processor would: the class stays (transformers keeps it that way too). */
static void test_frames_differ(void) {
    char src[512], dir[128];
    snprintf(src, sizeof src, "%s/models/story-llama", shared_data_dir());
    snprintf(dir, sizeof dir, "%s/nobos", tmpdir);
    OprmError err0 = {{0}};
    CHECK(make_dirs(dir, &err0) == 0);
    copy_to(src, "tokenizer.json", dir);
    char *p = path_join(dir, "tokenizer_config.json");
    const char *cfg_text = "{\"tokenizer_class\": \"LlamaTokenizer\", \"add_bos_token\": false, "
                           "\"bos_token\": \"<|start_story|>\", \"eos_token\": \"<|end_story|>\"}";
    OprmError err = {{0}};
    CHECK(write_file_atomic(p, cfg_text, strlen(cfg_text), &err) == 0);
    CHECK(tok_export_for_hf(dir, "chatml", &err) == 0);
    json_t *cfg = load_cfg(dir);
    CHECK(cfg && str(cfg, "tokenizer_class") && !strcmp(str(cfg, "tokenizer_class"), "LlamaTokenizer"));
    CHECK(cfg && json_object_get(cfg, "chat_template") == NULL);
    json_decref(cfg);
    free(p);
}

/* qwen3 (Qwen2Tokenizer, a template of its own): class rewritten, template kept. */
static void test_qwen3(void) {
    char src[512], dir[128];
    snprintf(src, sizeof src, "%s/tokenizers/qwen3", shared_data_dir());
    snprintf(dir, sizeof dir, "%s/qwen3", tmpdir);
    OprmError err0 = {{0}};
    CHECK(make_dirs(dir, &err0) == 0);
    copy_to(src, "tokenizer.json", dir);
    copy_to(src, "tokenizer_config.json", dir);
    json_t *orig = load_cfg(dir);
    OprmError err = {{0}};
    CHECK(tok_export_for_hf(dir, "chatml", &err) == 0);
    json_t *cfg = load_cfg(dir);
    CHECK(orig && cfg && str(cfg, "tokenizer_class") && !strcmp(str(cfg, "tokenizer_class"), "PreTrainedTokenizerFast"));
    CHECK(orig && cfg && !strcmp(str(cfg, "chat_template"), str(orig, "chat_template")));
    CHECK(cfg && json_object_size(cfg) == json_object_size(orig) + 1);
    json_decref(orig);
    json_decref(cfg);
}

/* What `oprm train` writes (the bug: the checkpoint carried LlamaTokenizer and no template). */
static void test_trained_checkpoint(void) {
    const char *b = getenv("OPRM_BIN");
    char data[128], out[128];
    snprintf(data, sizeof data, "%s/pairs.jsonl", tmpdir);
    snprintf(out, sizeof out, "%s/run", tmpdir);
    const char *pairs = "{\"prompt\": \"Hi\", \"chosen\": \"Hello there.\", \"rejected\": \"Go away.\"}\n"
                        "{\"prompt\": \"2+2?\", \"chosen\": \"4\", \"rejected\": \"5\"}\n";
    OprmError err = {{0}};
    CHECK(write_file_atomic(data, pairs, strlen(pairs), &err) == 0);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "%s train --model %s/models/story-llama --data %s --output %s --max_steps 1 "
             "--per_device_train_batch_size 2 --quiet --no-progress >/dev/null 2>&1",
             b ? b : "build/asan/oprm", shared_data_dir(), data, out);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    json_t *cfg = load_cfg(out);
    CHECK(cfg && str(cfg, "tokenizer_class") && !strcmp(str(cfg, "tokenizer_class"), "PreTrainedTokenizerFast"));
    CHECK(cfg && str(cfg, "chat_template") && !strcmp(str(cfg, "chat_template"), CHAT_PLAIN_TEMPLATE));
    json_decref(cfg);
    /* and the checkpoint still verifies and scores (the manifest lists the rewritten file) */
    snprintf(cmd, sizeof cmd, "%s score --model %s --data %s >/dev/null 2>&1", b ? b : "build/asan/oprm", out, data);
    st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A model whose chat_template oprm does not render exactly: oprm says so once,
 * naming the format it uses instead, and goes on (Qwen2.5's real template on
 * story-llama's weights and tokenizer). */
static void test_note_printed(void) {
    const char *b = getenv("OPRM_BIN");
    char src[512], dir[128], cmd[2000];
    snprintf(src, sizeof src, "%s/models/story-llama", shared_data_dir());
    snprintf(dir, sizeof dir, "%s/qwen25", tmpdir);
    OprmError err = {{0}};
    CHECK(make_dirs(dir, &err) == 0);
    copy_to(src, "config.json", dir);
    copy_to(src, "model.safetensors", dir);
    copy_to(src, "tokenizer.json", dir);
    /* the template of Qwen2.5 with story-llama's own special tokens */
    json_t *cfg = load_cfg("tests/fixtures/hf/templates/qwen2.5");
    CHECK(cfg != NULL);
    if (!cfg) return;
    json_object_set_new(cfg, "bos_token", json_string("<|start_story|>"));
    json_object_set_new(cfg, "eos_token", json_string("<|end_story|>"));
    char *cfg_path = path_join(dir, "tokenizer_config.json");
    CHECK(json_dump_file(cfg, cfg_path, 0) == 0);
    free(cfg_path);
    json_decref(cfg);
    snprintf(cmd, sizeof cmd, "%s score --model %s --data %s/pairs.jsonl >/dev/null 2>%s/note.txt",
             b ? b : "build/asan/oprm", dir, tmpdir, tmpdir);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char path[160];
    snprintf(path, sizeof path, "%s/note.txt", tmpdir);
    size_t n;
    char *text = read_file(path, &n, &err);
    CHECK_STR_CONTAINS(text, "note: the chat_template in tokenizer_config.json is Qwen2.5's");
    CHECK_STR_CONTAINS(text, "default system prompt");
    CHECK_STR_CONTAINS(text, "renders it as chatml");
    /* once, although the scorer sets up for every record */
    const char *first = text ? strstr(text, "note: the chat_template") : NULL;
    CHECK(first && !strstr(first + 1, "note: the chat_template"));
    free(text);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/oprm_test_hf_export_%d", (int)getpid());
    OprmError err = {{0}};
    CHECK(make_dirs(tmpdir, &err) == 0);
    RUN_SHARED(test_story_llama, "models/story-llama");
    RUN_SHARED(test_frames_differ, "models/story-llama");
    RUN_SHARED(test_qwen3, "tokenizers/qwen3");
    RUN_SHARED(test_trained_checkpoint, "models/story-llama");
    RUN_SHARED(test_note_printed, "models/story-llama");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    CHECK(system(cmd) == 0);
    return test_summary();
}
