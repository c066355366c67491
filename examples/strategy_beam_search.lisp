; strategy_beam_search.lisp -- the "Beam search" snippet of docs/guide.md, on SmolLM2-135M-Instruct.
; model: smollm2
;
; The snippet's line is kept verbatim. Lines after a "; [added]" comment bind what it assumes
; (`generator`, `input_tokens`) and print the result. Beam search keeps 4 hypotheses by default
; (set "num_beams" with torch_generator_config).

(use 'lispe_torch)

; [added] a generator on the embedded model and a translation request in its chat format
(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))
(setq generator (torch_generator_create model "cpu"))
(setq input_tokens (torch_tensor (tokenizer_chat '(("user" "Translate to French: Good morning.")))))

(setq beam_result (torch_generate generator input_tokens "beam_search"))

; [added]
(println "Beam search answer:" (tokenizer_decode (tensor_slice beam_result 0 (size input_tokens) (size beam_result))))
