-- Reference data of the sample CRM: users, teams, provinces, stages, accounts.

INSERT INTO crm.users (id, login, "fullName") VALUES
    (1,   'queue',  'Unassigned queue'),
    (100, 'admin',  'Sales admin (fallback)'),
    (101, 'an',     'Nguyễn Văn An'),
    (102, 'binh',   'Trần Thị Bình'),
    (103, 'cuong',  'Lê Văn Cường'),
    (201, 'dung',   'Phạm Thị Dung'),
    (202, 'em',     'Hoàng Văn Em'),
    (203, 'giang',  'Vũ Thị Giang'),
    (301, 'hai',    'Đặng Văn Hải'),
    (302, 'hoa',    'Bùi Thị Hoa'),
    (401, 'khanh',  'Đỗ Văn Khánh'),
    (402, 'lan',    'Ngô Thị Lan'),
    (403, 'minh',   'Phan Văn Minh'),
    (404, 'nga',    'Lý Thị Nga'),
    (305, 'quang',  'Trịnh Văn Quang');

INSERT INTO crm.sales_team (id, name) VALUES
    (11, 'Hà Nội retail'), (12, 'Hồ Chí Minh retail'), (13, 'Đà Nẵng retail'), (14, 'Digital retail'), (21, 'Corporate');

-- Đà Nẵng's team as the CRM knows it: Quang joined last week (not in the rule files).
INSERT INTO crm.sales_team_member ("teamId", "userId") VALUES (13, 301), (13, 302), (13, 305);

INSERT INTO crm.province (code, name) VALUES
    ('HN', 'Hà Nội'), ('HCM', 'Hồ Chí Minh'), ('DN', 'Đà Nẵng'), ('CT', 'Cần Thơ');

INSERT INTO crm.product (code, name, category) VALUES
    ('HOME', 'Home loan', 'loan'), ('AUTO', 'Car loan', 'loan'), ('CARD', 'Credit card', 'card'),
    ('SAVE', 'Term deposit', 'deposit'), ('TRADE', 'Trade finance', 'corporate'), ('CASH', 'Cash management', 'corporate');

INSERT INTO crm.stage (id, pipeline, name, seq, is_won, is_lost) VALUES
    (1, 'retail', 'New', 1, false, false),
    (2, 'retail', 'Qualified', 2, false, false),
    (3, 'retail', 'Won', 3, true, false),
    (4, 'retail', 'Lost', 4, false, true),
    (11, 'corporate', 'Prospecting', 1, false, false),
    (12, 'corporate', 'Quote', 2, false, false),
    (13, 'corporate', 'Won', 3, true, false),
    (14, 'corporate', 'Lost', 4, false, true);

-- 2000 accounts spread over the four provinces (Cần Thơ, one in twelve, has no team: those go
-- to the fallback).
-- Every tenth account has an account owner (the "company owner" a sticky rule keeps).
INSERT INTO crm.account ("accountId", name, "provinceCode", segment, "ownerId")
SELECT md5('account' || g)::uuid::text,
       'Customer ' || g,
       (ARRAY['HN', 'HCM', 'DN', 'HN', 'HCM', 'DN', 'HN', 'HCM', 'DN', 'HN', 'HCM', 'CT'])[1 + g % 12],
       (ARRAY['mass', 'affluent', 'sme'])[1 + g % 3],
       CASE WHEN g % 10 = 0 THEN (ARRAY[101, 201, 301, 102])[1 + (g / 10) % 4] END
FROM generate_series(1, 2000) AS g;
