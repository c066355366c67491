; troubleshooting_repetitive.lisp -- the "Repetitive output" snippet of docs/guide.md.
; model: tiny
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment are not in the snippet.
; A tiny random transformer with tied embeddings repeats itself under greedy decoding: a good patient
; for both remedies. Its text is noise; the counts of repeated tokens show the effect.

(use 'lispe_torch)

; [added] what the block assumes: a generator and a prompt; and a way to count repeats
(setq model (torch_model_create "transformer" {"vocab_size":49152 "seed":11 "tie_word_embeddings":true "init_std":0.05}))
(tokenizer_load "SmolLM2-135M-Instruct")
(setq generator (torch_generator_create model "cpu"))
(setq input_tokens (torch_tensor (tokenizer_encode "I think that")))
(defun repeats (out)
    (setq new (tensor_to_list (tensor_slice out 0 (size input_tokens) (size out))))
    (- (size new) (size (unique new))))
(setq result (torch_generate generator input_tokens "greedy"))
(println "Greedy, no penalty:" (repeats result) "repeated tokens |" (tokenizer_decode result))

; Increase repetition penalty
(setq config (("repetition_penalty" 1.3)))

; [added] apply it
(torch_generator_config generator config)
(setq result (torch_generate generator input_tokens "greedy"))
(println "Greedy, penalty 1.3:" (repeats result) "repeated tokens |" (tokenizer_decode result))

; Use nucleus sampling
(setq result (torch_generate generator input_tokens "top_p"))

; [added]
(println "Top-p, penalty 1.3:" (repeats result) "repeated tokens |" (tokenizer_decode result))
