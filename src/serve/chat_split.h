/* Recovering (conversation, response) from text that already has a chat
 * template applied, as OpenRLHF's /get_reward sends it: the query is the
 * templated prompt followed by the generated response (and often an
 * end-of-turn marker). Recognises ChatML (<|im_start|>role\n...<|im_end|>)
 * and Llama-3 (<|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>);
 * any other text is taken as one user turn. */
#ifndef OPRM_SERVE_CHAT_SPLIT_H
#define OPRM_SERVE_CHAT_SPLIT_H

#include "eval/scorer.h"

typedef struct {
    ScoreTurn *turns; /* roles are static strings; contents are owned */
    int n;
    char *response; /* owned; NULL until a split fills it */
} SplitChat;

void split_chat_free(SplitChat *c);

/* Removes, repeatedly, a trailing end-of-turn/end-of-text/pad marker
 * (<|im_end|>, <|eot_id|>, <|end_of_text|>, <|endoftext|>, </s>, <pad>, ...). */
void strip_end_markers(char *s);

/* Parses a templated prompt into turns ending with a user turn (a trailing
 * empty assistant header, the generation prompt, is dropped). Text in no
 * known format becomes a single user turn with the text itself. */
void split_prompt(const char *prompt, SplitChat *out);

/* /get_reward with a prompt: the response is what follows the prompt in the
 * query (the prompt must start the query, or occur in it after leading
 * padding/BOS). Returns 0, or -1 when the prompt is not in the query. */
int split_query_with_prompt(const char *query, const char *prompt, SplitChat *out);

/* /get_reward without prompts (old clients): the last assistant turn of a
 * templated query is the response; an unrecognised query is scored whole
 * as the response to an empty user turn. */
void split_query_alone(const char *query, SplitChat *out);

#endif
