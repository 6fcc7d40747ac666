-- 0013: the start-strategy command verb (resume a strategy an operator stopped; the trader
-- console's "Start strategy"). Only the verb check of 0004 changes; no row is touched.

ALTER TABLE commands DROP CONSTRAINT commands_verb_check;
ALTER TABLE commands ADD CONSTRAINT commands_verb_check
    CHECK (verb IN ('kill', 'reset-kill', 'stop-strategy', 'flatten', 'cancel-order', 'order',
                    'switch-mode', 'start-strategy'));
